"""Presence and typing over HTTP: who is here (GET /a/presence and `event: presence` frames),
who is typing (POST /a/typing and `event: typing` frames). Neither frame has an `id:` line.

Like every app test these run on each store (conftest's ``store_url``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from ..support import XSRF, Chat, SSEStream, until, with_settings

QUICK = with_settings(presence_grace=0.6)


async def roster(chat: Chat, room: str = "main") -> dict[str, Any]:
    response = await chat.client.get("/a/presence", params={"room": room})
    assert response.status == 200
    result: dict[str, Any] = await response.json()
    return result


async def presence_frames(s: SSEStream, timeout: float = 5.0) -> dict[str, Any]:
    """The next presence frame's data (frames have no id: line)."""
    while True:
        frame = await s.read_frame(timeout)
        if frame.startswith(b"event: presence\n"):
            assert b"\nid:" not in frame and not frame.startswith(b"id:")
            data: dict[str, Any] = json.loads(frame.split(b"data: ", 1)[1])
            return data


@pytest.mark.parametrize("settings", [QUICK], ids=["grace-0.6"])
async def test_members_join_are_listed_and_leave_after_the_grace(chat: Chat) -> None:
    async with chat.stream(name="alice", control=True) as alice:
        assert await presence_frames(alice) == {"count": 1, "members": ["alice"]}
        async with chat.stream(name="bob", control=True):
            assert await presence_frames(alice) == {"count": 2, "members": ["alice", "bob"]}
            assert await roster(chat) == {"count": 2, "members": ["alice", "bob"]}
        # Bob left: still listed within the grace, gone after it.
        assert await roster(chat) == {"count": 2, "members": ["alice", "bob"]}
        assert await presence_frames(alice) == {"count": 1, "members": ["alice"]}
    await until(lambda: roster(chat), {"count": 0, "members": []})


@pytest.mark.parametrize("settings", [with_settings(presence_grace=2.0)], ids=["grace-2"])
async def test_a_reload_within_the_grace_is_no_leave(chat: Chat) -> None:
    async with chat.stream(name="watcher", control=True) as watcher:
        await presence_frames(watcher)
        async with chat.stream(name="bob"):
            assert (await presence_frames(watcher))["members"] == ["bob", "watcher"]
        async with chat.stream(name="bob") as back:  # the reload
            await back.read_bytes(1)
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:  # no frame ever drops bob
                try:
                    frame = await presence_frames(watcher, timeout=0.5)
                except TimeoutError:
                    continue
                assert "bob" in frame["members"]


async def test_unnamed_streams_and_polls_are_counted_not_listed(chat: Chat) -> None:
    async with chat.stream(), chat.stream(name="ann"):
        await until(lambda: roster(chat), {"count": 2, "members": ["ann"]})


async def test_a_waiting_long_poll_is_present(chat: Chat) -> None:
    import asyncio
    poll = asyncio.create_task(chat.poll(cursor="zz-1", name="poller", room="quiet"))
    await until(lambda: roster(chat, "quiet"), {"count": 1, "members": ["poller"]})
    await poll


async def test_presence_frames_never_move_the_cursor(chat: Chat) -> None:
    first = await chat.post("one")
    async with chat.stream(name="a", last_event_id=first["id"], control=True) as s:
        frames = [await s.read_frame()]
        async with chat.stream(name="b"):
            frames.append(await s.read_frame())
            frames.append(await s.read_frame())
        assert all(b"\nid: " not in f and not f.startswith(b"id: ") for f in frames[1:])
        second = await chat.post("two")
    # Resuming from the last message id replays exactly what followed it.
    async with chat.stream(last_event_id=first["id"]) as again:
        assert [m["id"] for m in await again.messages(1)] == [second["id"]]


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
        frame = await s.read_frame()
        while frame.startswith(b"event: presence"):
            frame = await s.read_frame()
        assert frame.startswith(b"event: typing\ndata: ")
        typing = json.loads(frame.split(b"data: ", 1)[1])
        assert typing["name"] == "alice" and before + 4 < typing["until"] < time.time() + 6
        await chat.post("after")  # the next thing on the stream is the message: one typing only
        nxt = await s.read_frame()
        while nxt.startswith(b"event: presence"):
            nxt = await s.read_frame()
        assert nxt.startswith(b"id: ")


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
        nxt = await s.read_frame()
        while nxt.startswith(b"event: presence"):
            nxt = await s.read_frame()
        assert nxt.startswith(b"id: ")


async def test_typing_needs_a_name_and_the_xsrf_token(chat: Chat) -> None:
    assert (await chat.client.post("/a/typing", data={"_xsrf": XSRF})).status == 400
    chat.client.session.cookie_jar.clear()
    assert (await chat.client.post("/a/typing", data={"name": "x"})).status == 403


@pytest.mark.parametrize("settings", [with_settings(max_presence=1)], ids=["max-1"])
async def test_presence_names_are_bounded(chat: Chat) -> None:
    async with chat.stream(name="first"), chat.stream(name="second"):
        await until(lambda: roster(chat), {"count": 2, "members": ["first"]})
