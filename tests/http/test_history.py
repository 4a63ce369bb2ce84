"""GET /a/message/history: scrolling back page by page, its edges and its refusals, on every store."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ..support import Chat, future_cursor, one_store, with_settings, wrong_shape_cursor, zero_cursor


async def _history(chat: Chat, status: int = 200, **query: str) -> dict[str, Any]:
    response = await chat.client.get("/a/message/history", params=query)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    result: dict[str, Any] = await response.json()
    return result


async def _post(chat: Chat, n: int, room: str = "main") -> list[dict[str, Any]]:
    return [await chat.post(f"m{i}", room=room) for i in range(n)]


async def _scroll_back(chat: Chat, limit: int, room: str = "main") -> list[list[str]]:
    """Every page from the newest back to the oldest, each as the ids it showed."""
    pages: list[list[str]] = []
    page = await _history(chat, room=room, limit=str(limit))
    while True:
        assert "reset" not in page
        ids = [m["id"] for m in page["messages"]]
        pages.append(ids)
        if not page["more"]:
            return pages
        assert ids, "more: true with an empty page"
        page = await _history(chat, room=room, limit=str(limit), before=ids[0])


async def test_an_empty_room_has_an_empty_last_page(chat: Chat) -> None:
    assert await _history(chat, room="quiet") == {"messages": [], "more": False}


async def test_the_first_page_is_the_newest_messages_in_full(chat: Chat) -> None:
    posted = await _post(chat, 60)
    page = await _history(chat)
    assert page == {"messages": posted[-50:], "more": True}  # limit defaults to 50
    response = await chat.client.get("/a/message/history", params={"limit": "3"})
    assert response.headers["Cache-Control"] == "no-cache"
    assert await response.read() == b'{"messages":[%s],"more":true}' % b",".join(
        json.dumps(m, separators=(",", ":")).encode() for m in posted[-3:])


async def test_scrolling_back_shows_every_message_once_in_order(chat: Chat) -> None:
    ids = [m["id"] for m in await _post(chat, 45)]
    pages = await _scroll_back(chat, 10)
    assert [len(p) for p in pages] == [10, 10, 10, 10, 5]
    assert [i for page in reversed(pages) for i in page] == ids


async def test_a_room_of_exactly_one_page_says_no_more(chat: Chat) -> None:
    ids = [m["id"] for m in await _post(chat, 7)]
    assert await _scroll_back(chat, 7) == [ids]
    assert (await _history(chat, limit="8"))["more"] is False


async def test_before_the_oldest_message_is_an_empty_last_page(chat: Chat) -> None:
    ids = [m["id"] for m in await _post(chat, 3)]
    assert await _history(chat, before=ids[0]) == {"messages": [], "more": False}
    assert await _history(chat, before=zero_cursor(ids[0])) == {"messages": [], "more": False}
    page = await _history(chat, before=ids[1], limit="5")
    assert ([m["id"] for m in page["messages"]], page["more"]) == (ids[:1], False)


@pytest.mark.parametrize("settings", [with_settings(history=5)], ids=["history-5"])
async def test_scrolling_back_past_the_ram_window_reads_the_store(chat: Chat,
                                                                   store_url: str) -> None:
    """RAM holds 5 per room; the memory store keeps nothing else, SQLite and Redis keep all."""
    ids = [m["id"] for m in await _post(chat, 30)]
    kept = ids[-5:] if store_url == "memory" else ids
    pages = await _scroll_back(chat, 7)
    assert [i for page in reversed(pages) for i in page] == kept


@pytest.mark.parametrize("value", ["1", "200"])
async def test_limit_bounds_are_accepted(chat: Chat, value: str) -> None:
    posted = await _post(chat, 3)
    page = await _history(chat, limit=value)
    assert page == {"messages": posted[-int(value):], "more": value == "1"}


@one_store
@pytest.mark.parametrize("value", ["0", "201", "-1", "abc", "1.5", " 5", "٣", "99999999999999999999"])
async def test_a_bad_limit_is_a_400_and_says_why(chat: Chat, value: str) -> None:
    await _post(chat, 1)
    assert await _history(chat, 400, limit=value) == {
        "error": "limit must be a whole number from 1 to 200"}


@pytest.mark.parametrize("before", ["garbage", "zzzzzzzzzzzzzz-1", "wrong-shape", "future"])
async def test_a_bad_before_gets_the_newest_page_with_reset(chat: Chat, before: str) -> None:
    posted = await _post(chat, 5)
    cursor = {"wrong-shape": wrong_shape_cursor(posted[0]["id"]),
              "future": future_cursor(posted[-1]["id"])}.get(before, before)
    assert await _history(chat, before=cursor, limit="3") == {
        "messages": posted[-3:], "more": True, "reset": True}


async def test_a_bad_before_in_an_empty_room_is_an_empty_reset(chat: Chat) -> None:
    assert await _history(chat, room="quiet", before="garbage") == {
        "messages": [], "more": False, "reset": True}


async def test_rooms_are_apart_and_an_invalid_room_is_a_404(chat: Chat) -> None:
    a = await _post(chat, 2, room="a")
    await _post(chat, 2, room="b")
    assert (await _history(chat, room="a"))["messages"] == a
    assert (await _history(chat, room="a", before=a[1]["id"]))["messages"] == a[:1]
    error = await _history(chat, 404, room="no spaces")
    assert "invalid room name" in error["error"]


@one_store
async def test_only_get_is_allowed(chat: Chat) -> None:
    response = await chat.client.post("/a/message/history")
    assert response.status == 405
    assert "error" in await response.json()
