"""Idempotent posts on the SQLite store: a ``client_key`` names one message for 24 hours.

(The memory and Redis stores do not keep keys yet: these run on SQLite only.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chat.feed import Feed

from ..support import Chat, sqlite_url


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path / "chat.db")


async def test_the_same_key_twice_stores_one_message(chat: Chat) -> None:
    first = await chat.post_raw("hello", name="ann", client_key="k-1")
    again = await chat.post_raw("hello", name="ann", client_key="k-1")
    assert (first.status, again.status) == (200, 200)
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.read() == await first.read()
    assert [m["body"] for m in await chat.history()] == ["hello"]
    assert await chat.metric("chat_messages_published_total") == 1


@pytest.mark.parametrize("changed", [{"body": "other"}, {"name": "bob"}, {"name": ""}],
                         ids=["body", "name", "no-name"])
async def test_the_same_key_for_another_message_is_a_422(chat: Chat, changed: dict[str, str]) -> None:
    original = await chat.post("hello", name="ann", client_key="k-1")
    fields = {"body": "hello", "name": "ann", "client_key": "k-1", **changed}
    response = await chat.post_raw(fields.pop("body"), **fields)
    assert response.status == 422
    assert "client_key" in (await response.json())["error"]
    assert await chat.history() == [original]


async def test_keys_are_per_room_and_unkeyed_posts_are_never_replayed(chat: Chat) -> None:
    a = await chat.post("hello", client_key="k-1")
    b = await chat.post("hello", client_key="k-1", room="other")
    assert a["id"] != b["id"]
    plain = [await chat.post("same") for _ in range(2)]
    assert plain[0]["id"] != plain[1]["id"]


async def test_keys_within_one_batch_are_replayed_too(chat: Chat, feed: Feed) -> None:
    """Posts that arrive together share a transaction: a repeat inside it is still a replay."""
    posted = await asyncio.gather(*(feed.publish("main", "once", None, "same-key")
                                    for _ in range(10)))
    assert len({p.message.id for p in posted}) == 1
    assert sorted(p.replayed for p in posted) == [False] + [True] * 9
    assert [m["body"] for m in await chat.history()] == ["once"]
