"""GET /a/rooms and the room list on /: the active rooms, people first, then by their newest
message; GET /rooms?room=NAME, the no-script way to a room.

Like every app test these run on each store (conftest's ``store_url``). With the memory and SQLite
stores RAM holds every room this process posted to; with Redis only the rooms it serves a stream
or a poll of, and the rest come from Redis's room list within a second or two (tested in
test_redis_store.py, with the SQLite file's list after a restart in test_sqlite_store.py).
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from ..support import Chat, until


async def active(chat: Chat) -> list[dict[str, Any]]:
    response = await chat.client.get("/a/rooms")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-cache"
    reply: dict[str, Any] = await response.json()
    assert list(reply) == ["rooms"]
    rooms: list[dict[str, Any]] = reply["rooms"]
    return rooms


async def test_no_room_is_active_at_first(chat: Chat) -> None:
    assert await active(chat) == []


# The stores whose RAM windows see every post made through this process.
posts_reach_ram = pytest.mark.parametrize("store_url", ["memory", "sqlite"], indirect=True)


@posts_reach_ram
async def test_rooms_with_messages_newest_first(chat: Chat) -> None:
    before = time.time()
    for room in ("lobby", "design", "ops"):
        await chat.post(f"hello {room}", room=room)
    await chat.post("again", room="design")
    rooms = await active(chat)
    assert [r["room"] for r in rooms] == ["design", "ops", "lobby"]
    assert all(r["count"] == 0 and before - 1 <= r["last_ts"] <= time.time() + 1 for r in rooms)
    assert [sorted(r) for r in rooms] == [["count", "last_ts", "room"]] * 3


@posts_reach_ram
async def test_rooms_with_people_come_first_counted(chat: Chat) -> None:
    await chat.post("older", room="busy")
    await chat.post("newer", room="quiet")
    async with chat.stream(room="busy", name="alice"), chat.stream(room="busy"), \
            chat.stream(room="empty", name="bob"):
        async def listed() -> list[tuple[str, int, bool]]:
            return [(r["room"], r["count"], r["last_ts"] is None) for r in await active(chat)]

        # busy and empty have people (empty: no message yet), quiet had the newest message.
        await until(listed, [("busy", 2, False), ("empty", 1, True), ("quiet", 0, False)])


@posts_reach_ram
@pytest.mark.parametrize("n", [55])
async def test_at_most_50_rooms_are_listed(chat: Chat, n: int) -> None:
    for i in range(n):
        await chat.post("hi", room=f"room{i}")
    rooms = await active(chat)
    assert [r["room"] for r in rooms] == [f"room{i}" for i in range(n - 1, n - 51, -1)]


async def test_a_room_watched_here_is_listed_on_every_store(chat: Chat) -> None:
    async with chat.stream(room="watched") as watcher:
        await chat.post("seen here", room="watched")
        await watcher.messages(1)
        rooms = await active(chat)
    assert [(r["room"], r["count"]) for r in rooms] == [("watched", 1)]
    assert rooms[0]["last_ts"] is not None


@posts_reach_ram
async def test_the_index_lists_the_rooms_and_a_room_page_does_not(chat: Chat) -> None:
    await chat.post("hi", room="lobby")
    await chat.post("<b>", room="main")
    index = await (await chat.client.get("/")).text()
    links = re.findall(r'<a href="/rooms/([^"]+)"[^>]*>#', index)
    assert links == ["main", "lobby"]
    assert '<a href="/rooms/main" aria-current="page">#main</a>' in index
    assert 'nobody here · last message <time datetime="' in index
    assert '<form id="open-room" action="/rooms" method="get">' in index
    page = await (await chat.client.get("/rooms/lobby")).text()
    assert 'id="room-list"' not in page and '<a class="all-rooms" href="/#rooms">' in page


async def test_the_room_field_without_script_redirects_to_the_room(chat: Chat) -> None:
    response = await chat.client.get("/rooms", params={"room": " new-room_2 "}, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/rooms/new-room_2"


@pytest.mark.parametrize("name", ["", "no spaces", "a.b", "r" * 65, "../main", "é"])
async def test_the_room_field_refuses_a_bad_name_and_says_why(chat: Chat, name: str) -> None:
    response = await chat.client.get("/rooms", params={"room": name}, allow_redirects=False)
    assert response.status == 400
    assert "1 to 64 of A-Z a-z 0-9 _ -" in await response.text()
