"""Presence and typing over HTTP: who is here (GET /a/presence and `event: presence` frames),
who is typing (POST /a/typing and `event: typing` frames). Neither frame has an `id:` line.

Like every app test these run on each store (conftest's ``store_url``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import pytest

from chat.feed import Feed

from ..support import XSRF, Chat, FakeClock, SSEStream, one_store, parse_frame, until, with_settings


async def roster(chat: Chat, room: str = "main") -> dict[str, Any]:
    response = await chat.client.get("/a/presence", params={"room": room})
    assert response.status == 200
    result: dict[str, Any] = await response.json()
    return result


async def past_presence(s: SSEStream) -> bytes:
    """The next frame that is not a presence frame (those come whenever people come and go)."""
    frame = await s.read_frame()
    while frame.startswith(b"event: presence"):
        frame = await s.read_frame()
    return frame


async def presence_frames(s: SSEStream, timeout: float = 5.0) -> dict[str, Any]:
    """The next presence frame's data (frames have no id: line)."""
    while True:
        frame = await s.read_frame(timeout)
        if frame.startswith(b"event: presence\n"):
            assert b"\nid:" not in frame and not frame.startswith(b"id:")
            data: dict[str, Any] = json.loads(frame.split(b"data: ", 1)[1])
            return data


@pytest.mark.fake_clock
async def test_members_join_are_listed_and_leave_after_the_grace(chat: Chat, feed: Feed,
                                                                 clock: FakeClock) -> None:
    """On a fake clock (the grace is 15 s), the once-a-second round run by the test."""
    async with chat.stream(name="alice", control=True) as alice:
        assert await presence_frames(alice) == {"count": 1, "members": ["alice"]}
        async with chat.stream(name="bob", control=True):
            await feed.rooms.round()
            assert await presence_frames(alice) == {"count": 2, "members": ["alice", "bob"]}
            assert await roster(chat) == {"count": 2, "members": ["alice", "bob"]}
        # Bob left: still listed within the grace, gone after it.
        await chat.until_metric("chat_stream_clients", 1)
        clock.advance(14.9)
        await feed.rooms.round()
        assert await roster(chat) == {"count": 2, "members": ["alice", "bob"]}
        clock.advance(0.1)
        await feed.rooms.round()
        assert await presence_frames(alice) == {"count": 1, "members": ["alice"]}
    await chat.until_metric("chat_stream_clients", 0)
    clock.advance(15)
    await feed.rooms.round()
    assert await roster(chat) == {"count": 0, "members": []}


@pytest.mark.fake_clock
@pytest.mark.parametrize("settings", [with_settings(presence_grace=2.0)], ids=["grace-2"])
async def test_a_reload_within_the_grace_is_no_leave(chat: Chat, feed: Feed,
                                                     clock: FakeClock) -> None:
    async with chat.stream(name="watcher", control=True) as watcher:
        await presence_frames(watcher)
        async with chat.stream(name="bob"):
            await feed.rooms.round()
            assert (await presence_frames(watcher))["members"] == ["bob", "watcher"]
        await chat.until_metric("chat_stream_clients", 1)  # bob's first connection is gone
        clock.advance(1.0)
        await feed.rooms.round()  # what the once-a-second round does
        assert await roster(chat) == {"count": 2, "members": ["bob", "watcher"]}  # in his grace
        async with chat.stream(name="bob") as back:  # the reload, within the grace
            await back.read_bytes(1)
            clock.advance(1.5)  # the first connection's grace is over
            await feed.rooms.round()
            assert await roster(chat) == {"count": 2, "members": ["bob", "watcher"]}
            posted = await chat.post("after the grace")
            # No frame up to that message ever said bob left.
            while not (frame := await watcher.read_frame()).startswith(b"id: "):
                if frame.startswith(b"event: presence\n"):
                    assert "bob" in json.loads(frame.split(b"data: ", 1)[1])["members"], frame
            assert parse_frame(frame)["id"] == posted["id"]


async def test_unnamed_streams_and_polls_are_counted_not_listed(chat: Chat) -> None:
    async with chat.stream(), chat.stream(name="ann"):
        await until(lambda: roster(chat), {"count": 2, "members": ["ann"]})


async def test_a_waiting_long_poll_is_present(chat: Chat) -> None:
    poll = asyncio.create_task(chat.poll(cursor="zz-1", name="poller", room="quiet"))
    await until(lambda: roster(chat, "quiet"), {"count": 1, "members": ["poller"]})
    poll.cancel()  # the poll's own end (a timeout) is tests/http/test_longpoll.py's
    with contextlib.suppress(asyncio.CancelledError):
        await poll


async def test_presence_frames_never_move_the_cursor(chat: Chat, feed: Feed) -> None:
    first = await chat.post("one")
    async with chat.stream(name="a", last_event_id=first["id"], control=True) as s:
        frames = [await s.read_frame()]  # the opening
        async with chat.stream(name="b"):
            await feed.rooms.round()
            frames.append(await s.read_frame())  # who is here: a
            frames.append(await s.read_frame())  # who is here: a and b
        assert [f.split(b"\n", 1)[0] for f in frames[1:]] == [b"event: presence"] * 2, frames
        cursor = first["id"]
        for frame in frames:  # what an EventSource keeps as its last event id
            cursor = parse_frame(frame).get("id", cursor)
        second = await chat.post("two")
    # Resuming from that id replays exactly what followed the last message.
    async with chat.stream(last_event_id=cursor) as again:
        assert [m["id"] for m in await again.messages(1)] == [second["id"]]


@one_store
@pytest.mark.parametrize("name", ["a\nb", "x" * 65], ids=["newline", "too-long"])
async def test_a_bad_name_is_400_before_the_stream_opens(chat: Chat, name: str) -> None:
    response = await chat.client.get("/a/message/stream", params={"name": name})
    assert response.status == 400 and "name" in (await response.json())["error"]


async def test_typing_is_relayed_once_per_interval_without_an_id(chat: Chat) -> None:
    async with chat.stream(control=True) as s:
        await presence_frames(s)
        before = time.time()
        for _ in range(3):
            response = await chat.client.post("/a/typing",
                                              data={"_xsrf": XSRF, "name": "alice"})
            assert response.status == 204
        frame = await past_presence(s)
        assert frame.startswith(b"event: typing\ndata: ")
        typing = json.loads(frame.split(b"data: ", 1)[1])
        assert typing["name"] == "alice" and before + 4 < typing["until"] < time.time() + 6
        await chat.post("after")  # the next thing on the stream is the message: one typing only
        assert (await past_presence(s)).startswith(b"id: ")


@one_store
async def test_two_people_behind_one_address_are_both_relayed(chat: Chat) -> None:
    async with chat.stream(control=True) as s:
        await presence_frames(s)
        for name in ("alice", "bob", "alice"):
            response = await chat.client.post("/a/typing", data={"_xsrf": XSRF, "name": name})
            assert response.status == 204
        names: list[str] = []
        while len(names) < 2:
            frame = await s.read_frame()
            if frame.startswith(b"event: typing\n"):
                names.append(json.loads(frame.split(b"data: ", 1)[1])["name"])
        assert names == ["alice", "bob"]
        await chat.post("after")  # next is the message: alice's second notice was coalesced
        assert (await past_presence(s)).startswith(b"id: ")


@one_store
async def test_typing_needs_a_name_and_the_xsrf_token(chat: Chat) -> None:
    assert (await chat.client.post("/a/typing", data={"_xsrf": XSRF})).status == 400
    chat.client.session.cookie_jar.clear()
    assert (await chat.client.post("/a/typing", data={"name": "x"})).status == 403


@pytest.mark.parametrize("settings", [with_settings(max_presence=1)], ids=["max-1"])
async def test_presence_names_are_bounded(chat: Chat) -> None:
    async with chat.stream(name="first"), chat.stream(name="second"):
        await until(lambda: roster(chat), {"count": 2, "members": ["first"]})
