"""Idempotent posts: a client_key (form) or Idempotency-Key (API) is stored once per room.

Like every app test these run on each store (conftest's ``store_url``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from chat.feed import Feed
from chat.settings import Settings
from chat.web.app import create_app

from ..support import XSRF, Chat, one_store, with_settings

KEYS = with_settings(api_keys=("k-1",))
API = {"Authorization": "Bearer k-1"}


async def test_the_same_client_key_is_stored_once_and_replayed(chat: Chat) -> None:
    first = await chat.post_raw("hello", client_key="abc_1-x")
    again = await chat.post_raw("hello", client_key="abc_1-x")
    assert (first.status, again.status) == (200, 200)
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.read() == await first.read()  # the very same bytes: id, ts, html
    assert [m["body"] for m in await chat.history()] == ["hello"]


async def test_the_same_key_with_another_body_or_name_is_422_and_stores_nothing(chat: Chat) -> None:
    await chat.post("hello", client_key="k")
    for body, name in (("other", ""), ("hello", "ann")):
        response = await chat.post_raw(body, client_key="k", name=name)
        assert response.status == 422
        assert "another message" in (await response.json())["error"]
    assert [m["body"] for m in await chat.history()] == ["hello"]


async def test_a_key_is_per_room_and_no_key_is_no_key(chat: Chat) -> None:
    await chat.post("hi", client_key="k", room="a")
    await chat.post("hi", client_key="k", room="b")
    assert [m["body"] for m in await chat.history("b")] == ["hi"]
    await chat.post("same", room="a")
    await chat.post("same", room="a")
    assert [m["body"] for m in await chat.history("a")] == ["hi", "same", "same"]


@one_store
@pytest.mark.parametrize("key", ["", "a" * 65, "sp ace", "dot.", "é", "a\nb"],
                         ids=["empty-is-none", "65", "space", "dot", "accent", "newline"])
async def test_a_client_key_must_be_1_to_64_of_the_id_alphabet(chat: Chat, key: str) -> None:
    response = await chat.post_raw("x", client_key=key)
    if key == "":
        assert response.status == 200
        return
    assert response.status == 400
    assert "client_key" in (await response.json())["error"]
    assert await chat.history() == []


async def test_a_redirecting_form_post_replays_its_redirect(chat: Chat) -> None:
    for _ in range(2):
        response = await chat.post_raw("x", client_key="k", next="/rooms/main")
        assert (response.status, response.headers["Location"]) == (302, "/rooms/main")
    assert len(await chat.history()) == 1


@pytest.mark.parametrize("settings", [KEYS], ids=["api-key"])
async def test_the_api_replays_with_201_and_the_header(chat: Chat) -> None:
    replies = []
    for _ in range(2):
        response = await chat.client.post("/api/rooms/main/messages", json={"body": "deploy"},
                                          headers={**API, "Idempotency-Key": "d-42"})
        replies.append((response.status, response.headers.get("Idempotent-Replayed"),
                        await response.json()))
    assert [r[:2] for r in replies] == [(201, None), (201, "true")]
    assert replies[0][2] == replies[1][2]
    conflict = await chat.client.post("/api/rooms/main/messages", json={"body": "other"},
                                      headers={**API, "Idempotency-Key": "d-42"})
    assert conflict.status == 422
    assert [m["body"] for m in await chat.history()] == ["deploy"]


@pytest.mark.parametrize("settings", [KEYS], ids=["api-key"])
async def test_the_form_and_the_api_share_a_rooms_keys(chat: Chat) -> None:
    form = await chat.post("same", client_key="shared")
    response = await chat.client.post("/api/rooms/main/messages", json={"body": "same"},
                                      headers={**API, "Idempotency-Key": "shared"})
    assert response.headers["Idempotent-Replayed"] == "true"
    assert (await response.json())["id"] == form["id"]


@pytest.mark.redis
async def test_two_processes_racing_one_key_store_it_once(
        aiohttp_client: AiohttpClient, settings: Settings, redis_url: str) -> None:
    """The key is checked in the same Lua script as the append: two apps (as two processes
    would) posting the same key at once get one message between them."""
    clients: list[TestClient[Any, Any]] = []
    for _ in range(2):
        c = await aiohttp_client(create_app(dataclasses.replace(settings, store=redis_url)))
        c.session.cookie_jar.update_cookies({"_xsrf": XSRF})
        clients.append(c)
    for round_ in range(20):
        key = f"race-{round_}"
        replies = await asyncio.gather(*(
            c.post("/a/message/new", data={"_xsrf": XSRF, "body": "b", "client_key": key})
            for c in clients for _ in range(3)))
        bodies = [await r.json() for r in replies]
        assert {b["id"] for b in bodies} == {bodies[0]["id"]}
        assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in replies) == 5
    assert len(await Chat(clients[0]).history()) == 20


async def test_keys_within_one_batch_are_replayed_too(chat: Chat, feed: Feed) -> None:
    """Posts that arrive together (SQLite: one transaction) still store a repeated key once."""
    posted = await asyncio.gather(*(feed.publish("main", "once", None, "same-key")
                                    for _ in range(10)))
    assert len({p.message.id for p in posted}) == 1
    assert sorted(p.replayed for p in posted) == [False] + [True] * 9
    assert [m["body"] for m in await chat.history()] == ["once"]
    assert await chat.metric("chat_messages_published_total") == 1
