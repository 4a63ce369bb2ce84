"""GET /a/message/stream: exact bytes, resume matrix, reset, heartbeat, replay race."""

from __future__ import annotations

import asyncio
import json

import pytest

from chat.web.stream import opening

from ..support import (
    Chat,
    future_cursor,
    one_store,
    parse_frame,
    with_settings,
    wrong_shape_cursor,
    zero_cursor,
)

OPENING = b"retry: 1000\n: stream open\n\n"


async def test_headers_and_opening_bytes(chat: Chat) -> None:
    async with chat.stream() as s:
        assert s.response is not None
        assert s.response.status == 200
        assert s.response.headers["Content-Type"] == "text/event-stream"
        assert s.response.headers["Cache-Control"] == "no-cache"
        assert s.response.headers["X-Accel-Buffering"] == "no"
        assert "Content-Encoding" not in s.response.headers
        assert await s.read_bytes(len(OPENING)) == OPENING


@one_store
async def test_never_compressed_even_when_asked(chat: Chat) -> None:
    async with chat.stream(headers={"Accept-Encoding": "gzip, deflate, br"}) as s:
        assert s.response is not None
        assert "Content-Encoding" not in s.response.headers
        assert await s.read_bytes(len(OPENING)) == OPENING


async def test_message_frame_exact_bytes(chat: Chat) -> None:
    async with chat.stream() as s:
        await s.read_bytes(len(OPENING))
        posted = await chat.post("hello\nworld <b>", name="ann")
        data = json.dumps(posted, separators=(",", ":")).encode()
        expected = b"id: " + posted["id"].encode() + b"\nevent: message\ndata: " + data + b"\n\n"
        assert await s.read_bytes(len(expected)) == expected
        # The data line is the message object exactly as POST returned it.
        assert json.loads(data) == posted


@pytest.mark.parametrize("retry_ms", [0, 250, 1000, 3_600_000])
def test_opening_carries_retry(retry_ms: int) -> None:
    assert opening(retry_ms) == b"retry: %d\n: stream open\n\n" % retry_ms


async def test_reset_frame_exact_bytes(chat: Chat) -> None:
    first = await chat.post("one")
    base = zero_cursor(first["id"])  # the room holds all its messages: the base is before them all
    async with chat.stream(last_event_id="zz-5") as s:
        await s.read_bytes(len(OPENING))
        expected = b'id: ' + base.encode() + b'\nevent: reset\ndata: {"reason": "epoch"}\n\n'
        assert await s.read_bytes(len(expected)) == expected
        assert [m["id"] for m in await s.messages(1)] == [first["id"]]


@pytest.mark.parametrize("settings", [with_settings(ping_interval=0.05)], ids=["ping-50ms"])
async def test_heartbeat_exact_bytes(chat: Chat) -> None:
    async with chat.stream() as s:
        await s.read_bytes(len(OPENING))
        assert await s.read_bytes(8) == b": ping\n\n"
        assert await s.read_bytes(8) == b": ping\n\n"


@pytest.mark.parametrize("settings", [with_settings(ping_interval=0.05)], ids=["ping-50ms"])
async def test_heartbeat_does_not_move_cursor(chat: Chat) -> None:
    """Only message frames and the reset frame carry ``id:``; a ping is a bare comment, so a
    client's last event id is still the last message's after any number of pings."""
    first = await chat.post("one")
    async with chat.stream(last_event_id=first["id"]) as s:
        await s.read_bytes(len(OPENING))
        pings = [await s.read_frame() for _ in range(3)]  # nothing else is sent meanwhile
        assert pings == [b": ping\n\n"] * 3
        cursor = first["id"]
        for frame in pings:  # what an EventSource keeps as its last event id
            cursor = parse_frame(frame).get("id", cursor)
        assert cursor == first["id"]
        second = await chat.post("two")
        assert (await s.read_event())["id"] == second["id"]
    async with chat.stream(last_event_id=cursor) as again:  # a reconnection after the pings
        assert [m["id"] for m in await again.messages(1)] == [second["id"]]


# ---- the resume matrix ----------------------------------------------------------------------

async def _three(chat: Chat) -> list[str]:
    return [(await chat.post(f"m{i}"))["id"] for i in range(3)]


async def _events_after_opening(chat: Chat, n: int, **kw: object) -> list[dict[str, str]]:
    async with chat.stream(**kw) as s:  # type: ignore[arg-type]
        await s.read_bytes(len(OPENING))
        return [await s.read_event() for _ in range(n)]


async def test_resume_inside_buffer(chat: Chat) -> None:
    ids = await _three(chat)
    events = await _events_after_opening(chat, 2, last_event_id=ids[0])
    assert [e["id"] for e in events] == ids[1:]
    assert all(e["event"] == "message" for e in events)


async def test_resume_at_newest_waits_for_next(chat: Chat) -> None:
    ids = await _three(chat)
    async with chat.stream(last_event_id=ids[-1]) as s:
        await s.read_bytes(len(OPENING))
        with pytest.raises(asyncio.TimeoutError):
            await s.read_event(timeout=0.2)
        nxt = await chat.post("next")
        assert (await s.read_event())["id"] == nxt["id"]


async def test_earliest_sends_whole_buffer(chat: Chat) -> None:
    ids = await _three(chat)
    events = await _events_after_opening(chat, 3, last_event_id="earliest")
    assert [e["id"] for e in events] == ids


async def test_no_cursor_means_only_new_messages(chat: Chat) -> None:
    await _three(chat)
    async with chat.stream() as s:
        await s.read_bytes(len(OPENING))
        with pytest.raises(asyncio.TimeoutError):
            await s.read_event(timeout=0.2)
        nxt = await chat.post("new")
        assert (await s.read_event())["id"] == nxt["id"]


@pytest.mark.parametrize("settings", [with_settings(history=3)], ids=["history-3"])
@pytest.mark.parametrize("store_url", ["memory"])  # RAM is all the memory store keeps
async def test_evicted_cursor_resets(chat: Chat) -> None:
    ids = [(await chat.post(f"m{i}"))["id"] for i in range(6)]  # RAM holds ids[3:]
    events = await _events_after_opening(chat, 4, last_event_id=ids[1])
    # The base is the id just before what is held.
    assert events[0] == {"id": ids[2], "event": "reset", "data": '{"reason": "evicted"}'}
    assert [e["id"] for e in events[1:]] == ids[3:]


@pytest.mark.parametrize("settings", [with_settings(history=3)], ids=["history-3"])
async def test_cursor_just_before_buffer_is_still_valid(chat: Chat) -> None:
    """The reset frame's id (oldest - 1) resumes without a second reset."""
    ids = [(await chat.post(f"m{i}"))["id"] for i in range(6)]
    events = await _events_after_opening(chat, 3, last_event_id=ids[2])
    assert [(e["event"], e["id"]) for e in events] == [("message", i) for i in ids[3:]]


@pytest.mark.parametrize("cursor, reason", [
    ("not-a-cursor!", "malformed"),
    ("abc", "malformed"),
    ("", None),
    ("zzzzzz-1", "epoch"),
    ("FUTURE", "unknown"),
    ("WRONG-SHAPE", "malformed"),
    ("LEADING-ZERO", "malformed"),
], ids=["junk", "no-dash", "empty-is-none", "other-epoch", "future", "wrong-shape",
        "leading-zero"])
async def test_untrusted_cursor_resets_then_replays(chat: Chat, cursor: str,
                                                    reason: str | None) -> None:
    ids = await _three(chat)
    if cursor == "FUTURE":
        cursor = future_cursor(ids[-1])
    elif cursor == "WRONG-SHAPE":
        cursor = wrong_shape_cursor(ids[-1])
    elif cursor == "LEADING-ZERO":  # another spelling of the newest id: not one we issued
        head, _, last = ids[-1].rpartition("-")
        cursor = f"{head}-0{last}"
    if reason is None:  # an empty cursor is no cursor: live only
        async with chat.stream(last_event_id=cursor) as s:
            await s.read_bytes(len(OPENING))
            nxt = await chat.post("live")
            assert (await s.read_event())["id"] == nxt["id"]
        return
    events = await _events_after_opening(chat, 4, last_event_id=cursor)
    assert events[0] == {"id": zero_cursor(ids[0]), "event": "reset",
                         "data": json.dumps({"reason": reason})}
    assert [e["id"] for e in events[1:]] == ids


@pytest.mark.parametrize("bad", ["a\x00b", "x\ny", "x\rid: 5", "x\r\n\r\nevent: evil"],
                         ids=["nul", "lf", "cr", "crlf-injection"])
async def test_control_characters_in_cursor_reset_and_never_echo(chat: Chat, bad: str) -> None:
    ids = await _three(chat)
    async with chat.stream(last_event_id=bad) as s:
        await s.read_bytes(len(OPENING))
        frames = [await s.read_frame() for _ in range(4)]
    assert parse_frame(frames[0])["event"] == "reset"
    assert [parse_frame(f)["id"] for f in frames[1:]] == ids
    assert b"evil" not in b"".join(frames)


async def test_header_wins_over_query(chat: Chat) -> None:
    ids = await _three(chat)
    events = await _events_after_opening(chat, 1, last_event_id=ids[0],
                                         headers={"Last-Event-ID": ids[1]})
    assert events[0]["id"] == ids[2]


async def test_query_used_without_header(chat: Chat) -> None:
    ids = await _three(chat)
    events = await _events_after_opening(chat, 1, last_event_id=ids[1])
    assert events[0]["id"] == ids[2]


async def test_reset_not_repeated_when_resuming_from_reset_id(chat: Chat) -> None:
    """A client that drops right after a reset frame resumes from its id without another reset."""
    await chat.post("m0")
    reset = (await _events_after_opening(chat, 1, last_event_id="qqqq-3"))[0]
    assert reset["event"] == "reset"
    events = await _events_after_opening(chat, 1, headers={"Last-Event-ID": reset["id"]})
    assert events[0]["event"] == "message"


async def test_rooms_are_separate(chat: Chat) -> None:
    async with chat.stream(room="other") as s:
        await s.read_bytes(len(OPENING))
        await chat.post("for main")
        mine = await chat.post("for other", room="other")
        assert (await s.read_event())["id"] == mine["id"]


@one_store
async def test_invalid_room_is_404_json(chat: Chat) -> None:
    response = await chat.client.get("/a/message/stream", params={"room": "no/pe"})
    assert response.status == 404
    assert "room" in (await response.json())["error"]


# ---- replay and live together ---------------------------------------------------------------

@pytest.mark.parametrize("settings", [with_settings(max_body=50_000, max_request=1 << 20)],
                         ids=["big-bodies"])
async def test_messages_accepted_during_replay_arrive_once_in_order(chat: Chat) -> None:
    """The replay is big enough to block on the socket; messages posted meanwhile queue up."""
    before = [(await chat.post(f"{i}" + "x" * 40_000))["id"] for i in range(150)]
    async with chat.stream(last_event_id="earliest") as s:
        # Do not read yet: the 6 MB replay fills the socket and the server's write waits.
        during = [(await chat.post(f"during {i}"))["id"] for i in range(20)]
        got = [m["id"] for m in await s.messages(len(before) + len(during), timeout=20)]
        after = (await chat.post("after"))["id"]
        assert (await s.read_event())["id"] == after
    assert got == before + during


async def test_live_messages_in_order_once(chat: Chat) -> None:
    async with chat.stream() as s:
        await s.read_bytes(len(OPENING))
        posted = [(await chat.post(f"m{i}"))["id"] for i in range(50)]
        assert [m["id"] for m in await s.messages(50)] == posted


@one_store
@pytest.mark.parametrize("raw", [b"a\x00b", b"a\rb", b"a\nevent: evil"], ids=["nul", "cr", "lf"])
async def test_control_characters_in_last_event_id_header_are_refused_by_http(
        chat: Chat, raw: bytes) -> None:
    """No browser can send these: aiohttp's HTTP parser answers 400 before any route runs."""
    server = chat.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"GET /a/message/stream HTTP/1.1\r\nHost: x\r\nLast-Event-ID: " + raw + b"\r\n\r\n")
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert reply.startswith(b"HTTP/1.0 400 Bad Request\r\n")
    assert b"evil" not in reply.split(b"\r\n\r\n", 1)[0]  # nothing reached the headers
    assert await chat.metric("chat_stream_clients") == 0
    assert (await chat.post("still serving"))["body"] == "still serving"
