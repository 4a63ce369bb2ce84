"""chat.client against real servers (and, for frames our server does not send yet, a scripted
one): subscribe() through cuts, held reconnects, restarts and refused streams; publish() through
refusals, faults and a server that is down; the SSE parser and the backoff on their own."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import MultiDict

from chat.client import Backoff, PublishError, Reset, SubscribeError, publish, subscribe
from chat.client.sse import Event, SSEParser

from ..support import NO_LIMITS, ServerProcess, free_port, until
from ..support.commands import API_KEY, history, post
from ..support.servers import HttpFront, TcpProxy

SERVER = (*NO_LIMITS, "--retry-ms", "100", "--poll-timeout", "1", "--api-keys", API_KEY)
AiohttpServer = Callable[[web.Application], Awaitable[TestServer]]



async def take(sub: Any, n: int, timeout: float = 10.0) -> list[Any]:
    """The next ``n`` items, each within ``timeout``."""
    items = []
    for _ in range(n):
        try:
            items.append(await asyncio.wait_for(anext(sub), timeout))
        except TimeoutError:
            raise AssertionError(f"after {items!r}: no item within {timeout}s; "
                                 f"status {sub.status}") from None
    return items


def bodies(items: list[Any]) -> list[Any]:
    return [item if isinstance(item, Reset) else item["body"] for item in items]


# ---- subscribe() against python -m chat --------------------------------------------------------

async def test_cut_mid_event_and_held_reconnect_every_message_once() -> None:
    with ServerProcess(*SERVER) as server:
        proxy = TcpProxy(server.port)
        await proxy.up()
        try:
            async with subscribe(f"http://127.0.0.1:{proxy.port}", "main",
                                 after="earliest") as sub:
                posted = [await post(server.url, f"m{i}") for i in range(3)]
                assert await take(sub, 3) == posted
                assert sub.cursor == posted[-1]["id"]
                assert sub.backoff.base == 0.1  # the server's retry: 100
                proxy.hold()
                proxy.cut_at(b'"body":"m3"')
                posted.append(await post(server.url, "m3"))
                await until(lambda: (proxy.cuts, proxy.held), (1, 1))
                assert sub.cursor == posted[2]["id"]  # the cut frame moved nothing
                posted += [await post(server.url, f"m{i}") for i in range(4, 8)]
                proxy.release()
                assert await take(sub, 5) == posted[3:]
                assert sub.cursor == posted[-1]["id"]
                assert sub.status is not None and sub.status.connected
        finally:
            await proxy.close()


async def test_memory_server_restart_yields_one_reset_then_new_messages() -> None:
    with ServerProcess(*SERVER) as server:
        async with subscribe(server.url, "main", after="earliest") as sub:
            old = await post(server.url, "old")
            assert await take(sub, 1) == [old]
            server.stop()
            server.start(port=server.port)
            new = [await post(server.url, "new 1")]
            items = await take(sub, 2)
            assert items == [Reset("epoch"), new[0]]
            new.append(await post(server.url, "new 2"))
            assert await take(sub, 1) == [new[1]]


async def test_live_start_misses_nothing_when_dropped_before_the_first_message() -> None:
    with ServerProcess(*SERVER) as server:
        before = await post(server.url, "before")
        proxy = TcpProxy(server.port)
        await proxy.up()
        try:
            async with subscribe(f"http://127.0.0.1:{proxy.port}", "main") as sub:
                waiting = asyncio.ensure_future(anext(sub))
                await until(lambda: sub.status is not None and sub.status.connected, True)
                assert sub.cursor == before["id"]  # where the room page said it stood
                await proxy.down()  # the stream drops before any message came
                during = await post(server.url, "while it was away")
                await proxy.up()
                assert await asyncio.wait_for(waiting, 10) == during
        finally:
            await proxy.close()


async def test_a_cancelled_wait_loses_nothing() -> None:
    with ServerProcess(*SERVER) as server:
        async with subscribe(server.url, "main", after="earliest") as sub:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(sub), 0.3)
            posted = await post(server.url, "after the timeout")
            assert await take(sub, 1) == [posted]


@pytest.mark.parametrize("refusal", [(404, "text/html"), (200, "text/html"), (503, "text/html")],
                         ids=["404", "200-html", "503"])
async def test_refused_streams_fall_back_to_long_poll(refusal: tuple[int, str]) -> None:
    with ServerProcess(*SERVER) as server:
        front = await HttpFront(server.url).start()
        front.refuse_streams = refusal
        try:
            posted = [await post(server.url, f"m{i}") for i in range(2)]
            async with subscribe(front.url, "main", after="earliest") as sub:
                assert await take(sub, 2) == posted
                for i in range(2, 5):
                    posted.append(await post(server.url, f"m{i}"))
                    assert await take(sub, 1) == [posted[-1]]
                assert sub.status is not None and sub.status.transport == "poll"
                assert f"stream refused: HTTP {refusal[0]}" in sub.status.detail
            assert len(front.to("/a/message/stream")) == 1
            polls = [MultiDict(_form(body)) for _, _, _, body in front.to("/a/message/updates")]
            cursors = [p.get("cursor") for p in polls]
            # The first poll had no cursor; each later one resumed from the last message it had.
            order = [m["id"] for m in posted]
            places = [order.index(c) for c in cursors[1:]]
            assert cursors[0] is None and places[0] == 1 and places == sorted(places), cursors
            assert all(p["_xsrf"] for p in polls)
        finally:
            await front.close()


def _form(body: bytes) -> list[tuple[str, str]]:
    return urllib.parse.parse_qsl(body.decode())


async def test_long_poll_reset_is_a_reset_too() -> None:
    with ServerProcess(*SERVER) as server:
        front = await HttpFront(server.url).start()
        front.refuse_streams = (404, "text/html")
        try:
            held = await post(server.url, "held")
            async with subscribe(front.url, "main", after="zzzz-5") as sub:
                assert await take(sub, 2) == [Reset("unspecified"), held]
        finally:
            await front.close()


async def test_no_chat_server_there_is_a_subscribe_error(aiohttp_server: AiohttpServer) -> None:
    server = await aiohttp_server(web.Application())
    for after in (None, "earliest"):
        async with subscribe(str(server.make_url("/")), "main", after=after) as sub:
            with pytest.raises(SubscribeError, match="404"):
                await take(sub, 1)
    with pytest.raises(ValueError, match="invalid room"):
        subscribe("http://127.0.0.1:1", "no such room")
    with pytest.raises(ValueError, match="http"):
        subscribe("ftp://127.0.0.1:1", "main")


# ---- subscribe() against a scripted server: frames ours does not send (yet) --------------------

def _message(n: int) -> dict[str, Any]:
    return {"id": f"e-{n}", "room": "main", "body": f"b{n}", "name": None, "ts": 1.0, "html": ""}


def _frame(n: int, eol: bytes = b"\n") -> bytes:
    lines = [b"id: e-%d" % n, b"event: message", b"data: " + json.dumps(_message(n)).encode()]
    return eol.join(lines) + eol + eol


PRESENCE = b'event: presence\ndata: {"count": 2, "members": ["ann"]}\n\n'
TYPING = b'event: typing\ndata: {"name": "ann", "until": 1}\n\n'
SCRIPT: list[tuple[bytes, str]] = [
    # (what one connection gets, how it ends: "end" cleanly, "cut" abruptly)
    (b"retry: 50\n: stream open\n\n" + PRESENCE + _frame(1) + TYPING + PRESENCE, "end"),
    (_frame(1) + _frame(2) + b'id: e-3\nevent: message\ndata: {"id": "e-3", "bo', "cut"),
    (b"\xef\xbb\xbf" + _frame(3, b"\r\n") + b"event: whatever\nid: e-99\ndata: x\n\n", "end"),
    (_frame(4, b"\r") + b'id: f-0\nevent: reset\ndata: {"reason": "epoch"}\n\n', "end"),
]


async def test_only_complete_message_frames_move_the_cursor(aiohttp_server: AiohttpServer) -> None:
    seen: list[str | None] = []

    async def stream(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Last-Event-ID"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if len(seen) > len(SCRIPT):
            await asyncio.Event().wait()  # the script is over: hold the stream open
        data, end = SCRIPT[len(seen) - 1]
        for i in range(len(data)):  # byte by byte: every frame arrives in pieces
            await response.write(data[i:i + 1])
        if end == "cut":
            assert request.transport is not None
            request.transport.abort()
        return response

    app = web.Application()
    app.router.add_get("/a/message/stream", stream)
    server = await aiohttp_server(app)
    async with subscribe(str(server.make_url("/")), "main", after="earliest") as sub:
        items = await take(sub, 5)
        assert sub.backoff.base == 0.05  # retry: 50
        await until(lambda: len(seen), 5)
    assert items == [_message(1), _message(2), _message(3), _message(4), Reset("epoch")]
    # Presence and typing frames, an unknown event with an id, the cut frame and the duplicate
    # moved nothing; each message did, and so did the reset's id.
    assert seen == ["earliest", "e-1", "e-2", "e-3", "f-0"]


# ---- publish() ---------------------------------------------------------------------------------

async def test_publish_with_a_key_and_through_the_form() -> None:
    with ServerProcess(*SERVER) as server:
        by_api = await publish(server.url, "lobby", "  via api ", name="bot", api_key=API_KEY)
        by_form = await publish(server.url, "lobby", "via form", name="ann")
        assert (by_api["body"], by_api["name"], by_form["body"], by_form["name"]) == (
            "via api", "bot", "via form", "ann")
        assert await history(server.url, "lobby") == [by_api, by_form]


@pytest.mark.parametrize("api_key, body, status, words", [
    ("wrong-key", "x", 401, "invalid API key"),
    (API_KEY, "   ", 400, "body is required"),
    (None, "   ", 400, "body is required"),
], ids=["wrong-key", "blank-api", "blank-form"])
async def test_publish_raises_at_once_on_a_refusal(api_key: str | None, body: str, status: int,
                                                   words: str) -> None:
    with ServerProcess(*SERVER) as server:
        front = await HttpFront(server.url).start()
        try:
            with pytest.raises(PublishError) as caught:
                await publish(front.url, "main", body, api_key=api_key)
            assert caught.value.status == status and words in caught.value.reason
            assert "wrong-key" not in str(caught.value)
            posts = [r for r in front.requests if r[0] == "POST"]
            assert len(posts) == 1  # not retried
            assert await history(server.url) == []
        finally:
            await front.close()


@pytest.mark.parametrize("api_key", [API_KEY, None], ids=["api", "form"])
async def test_publish_retries_503_429_and_a_lost_reply_with_one_key(api_key: str | None) -> None:
    with ServerProcess(*SERVER) as server:
        front = await HttpFront(server.url).start()
        path = "/api/rooms/main/messages" if api_key else "/a/message/new"
        front.faults = [(path, "503"), (path, "429"), (path, "drop")]
        try:
            retries: list[str] = []
            message = await publish(front.url, "main", "once", api_key=api_key,
                                    on_retry=lambda reason, delay: retries.append(reason))
            attempts = front.to(path)
            assert len(attempts) == 4 and len(retries) == 3, retries
            keys = {r[2].get("Idempotency-Key") if api_key else MultiDict(_form(r[3]))["client_key"]
                    for r in attempts}
            assert len(keys) == 1 and None not in keys
            # The lost reply's message was stored; the retry with its key got that very message
            # back, and nothing was stored twice.
            assert await history(server.url) == [message]
        finally:
            await front.close()


async def test_publish_waits_out_a_real_429() -> None:
    with ServerProcess(*SERVER, "--api-post-rate", "1", "--api-post-burst", "1") as server:
        front = await HttpFront(server.url).start()
        try:
            waits: list[float] = []
            first = await publish(front.url, "main", "first", api_key=API_KEY)
            second = await publish(front.url, "main", "second", api_key=API_KEY,
                                   on_retry=lambda reason, delay: waits.append(delay))
            assert len(waits) == 1 and waits[0] >= 1  # Retry-After: 1
            attempts = front.to("/api/rooms/main/messages")[1:]
            assert len({r[2]["Idempotency-Key"] for r in attempts}) == 1 and len(attempts) == 2
            assert await history(server.url) == [first, second]
        finally:
            await front.close()


async def test_publish_while_the_server_is_down_stores_once_when_it_comes() -> None:
    port = free_port()
    retries: list[str] = []
    task = asyncio.create_task(publish(f"http://127.0.0.1:{port}", "main", "patience",
                                       api_key=API_KEY,
                                       on_retry=lambda reason, delay: retries.append(reason)))
    try:
        await until(lambda: len(retries) >= 1, True)
        with ServerProcess(*SERVER) as server:
            server.stop()
            server.start(port=port)
            message = await asyncio.wait_for(task, 30)
            assert await history(server.url) == [message]
    finally:
        task.cancel()


async def test_publish_gives_up_after_retry_for() -> None:
    with pytest.raises(PublishError, match="not stored after trying for 1 s") as caught:
        await publish(f"http://127.0.0.1:{free_port()}", "main", "x", retry_for=1)
    assert caught.value.status is None
    with pytest.raises(ValueError, match="idempotency_key"):
        await publish("http://127.0.0.1:1", "main", "x", idempotency_key="no spaces")


# ---- pieces --------------------------------------------------------------------------------

FRAMES = (b"\xef\xbb\xbfretry: 70\n: comment\n\nevent: message\nid: a-1\ndata: one\ndata:two\n\n"
          b"data: crlf\r\n\r\nid: b\x00ad\nretry: soon\ndata: cr\r\rid: only-an-id\n\n"
          b"event: typing\ndata: {}\n\nid: a-2\ndata: cut")


def test_sse_parser_whole_or_byte_by_byte() -> None:
    expected = [Event("message", "one\ntwo", "a-1"), Event("message", "crlf", None),
                Event("message", "cr", None), Event("typing", "{}", None)]
    whole = SSEParser()
    assert whole.feed(FRAMES) == expected and whole.retry == 70
    one_by_one = SSEParser()
    assert [e for i in range(len(FRAMES)) for e in one_by_one.feed(FRAMES[i:i + 1])] == expected
    # The frame without its blank line never comes out, however long it waits.
    assert whole.feed(b"") == [] and one_by_one.feed(b"\n") == []
    assert one_by_one.feed(b"\n") == [Event("message", "cut", "a-2")]


def test_sse_parser_bounds_a_line() -> None:
    parser = SSEParser(max_line=100)
    with pytest.raises(ValueError, match="longer than 100"):
        parser.feed(b"data: " + b"x" * 200)


def test_backoff_is_capped_jittered_and_resets() -> None:
    low, high = Backoff(1.0, 10.0, rand=lambda: 0.0), Backoff(1.0, 10.0, rand=lambda: 0.999999)
    assert [low.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert [round(high.next(), 3) for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    low.reset()
    assert low.next() == 0.5


def test_the_client_imports_nothing_of_the_server() -> None:
    code = ("import json, sys, chat.client, chat.tail, chat.post; "
            "print(json.dumps([m for m in sys.modules if m.startswith('chat') or m == 'aiohttp.web']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=30, check=True)
    loaded = set(json.loads(result.stdout))
    assert loaded <= {"chat", "chat.client", "chat.tail", "chat.post"} | {
        m for m in loaded if m.startswith("chat.client.")}, loaded
