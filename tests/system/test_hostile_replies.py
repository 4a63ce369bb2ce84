"""Replies that cannot pin memory: clients that ask for a room of maximum-size messages and then
never read, against a real ``python -m chat``.

A reply that fits the kernel's send buffer leaves the process at once (the kernel holds it until
the keep-alive timeout closes the idle connection); one that does not waits in our buffer, holds
its client's connection slot, counts towards --max-pending-bytes, and is cut off once the client
has accepted nothing for --stall-timeout.
"""

from __future__ import annotations

import asyncio
import socket
import urllib.parse
from collections.abc import Iterator

import aiohttp
import pytest

from ..support import GET_METRICS, XSRF, ServerProcess, form_request, raw_exchange, rss_mb, until

ROOM = "big"
BIG_BODY = "\U0001f600" * 4096  # the longest body: 4,096 emoji, 16 KB of UTF-8
BIG_REPLY = ("--max-reply-bytes", "16000000")  # the whole room (6.6 MB) in one reply


async def fill(server: ServerProcess, n: int = 200) -> None:
    async with aiohttp.ClientSession(cookies={"_xsrf": XSRF}) as session:
        for _ in range(n):
            async with session.post(server.url + "/a/message/new",
                                    data={"_xsrf": XSRF, "body": BIG_BODY, "room": ROOM}) as r:
                assert r.status == 200, await r.text()


def poll_request(room: str = ROOM, who: str | None = None) -> bytes:
    extra = f"X-Forwarded-For: {who}\r\n".encode() if who else b""
    return form_request("/a/message/updates",
                        urllib.parse.urlencode({"_xsrf": XSRF, "room": room}).encode(),
                        extra=extra)


def never_reading(port: int, request: bytes) -> socket.socket:
    """A client with a 1 KB receive buffer that sends ``request`` and never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    return sock


def metric(server: ServerProcess, name: str) -> float:
    reply = raw_exchange(server.port, GET_METRICS, timeout=0.2)
    for line in reply.body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.fixture(scope="module")
def full_room() -> Iterator[ServerProcess]:
    """Default limits (one address may hold 20 polls), a room of 200 maximum-size messages."""
    with ServerProcess("--post-rate", "0", "--keepalive-timeout", "3", "--metrics-cache", "0",
                       "--stall-timeout", "3") as server:
        asyncio.run(fill(server))
        yield server


async def test_40_non_reading_polls_of_a_full_room_stay_under_64_mb(
        full_room: ServerProcess) -> None:
    """Each answer is at most --max-reply-bytes (512 KiB); the kernel takes it whole, and the
    keep-alive timeout closes the idle connection, which frees it."""
    pid = full_room.proc.pid  # type: ignore[union-attr]
    await asyncio.sleep(0.3)
    before = rss_mb(pid)
    clients = [never_reading(full_room.port, poll_request()) for _ in range(40)]
    try:
        peak = before
        for _ in range(10):
            await asyncio.sleep(0.1)
            peak = max(peak, rss_mb(pid))
        assert peak - before < 64, (before, peak)
        # Within the keep-alive timeout (3 s here) the connections are closed and the memory
        # given back.
        await until(lambda: metric(full_room, "chat_open_connections") <= 1, True, 10)
        assert rss_mb(pid) - before < 16, (before, peak, rss_mb(pid))
    finally:
        for sock in clients:
            sock.close()


def test_the_page_renders_the_newest_messages_within_the_reply_budget(
        full_room: ServerProcess) -> None:
    reply = raw_exchange(full_room.port, f"GET /rooms/{ROOM} HTTP/1.1\r\nHost: x\r\n"
                         "Connection: close\r\n\r\n".encode(),
                         timeout=0.2)
    assert reply.status == 200
    assert len(reply.body) < 512 * 1024 + 16 * 1024  # the page renders the capped read
    page = reply.body.decode()
    shown = page.count('class="message"')
    assert 0 < shown < 200  # the newest that fit; the rest is for scroll-back
    assert 'data-cursor="' in page


async def test_a_reply_bigger_than_the_socket_buffers_holds_its_slot_until_cut_off() -> None:
    """The slot is held until the reply is written: a fourth non-reading poll from the address
    is refused. After --stall-timeout of accepting nothing each is cut off, counted and logged,
    its memory freed, and the address may poll again."""
    with ServerProcess("--post-rate", "0", "--max-client-connections", "3", "--stall-timeout", "2",
                       "--metrics-cache", "0", *BIG_REPLY) as server:
        await fill(server)
        pid = server.proc.pid  # type: ignore[union-attr]
        before = rss_mb(pid)
        clients = [never_reading(server.port, poll_request()) for _ in range(3)]
        try:
            await until(lambda: metric(server, "chat_pending_bytes") > 3_000_000, True, 10)
            refused = raw_exchange(server.port, poll_request(), timeout=1)
            assert refused.status == 429 and "at most 3" in refused.body.decode()
            # The timing is the contract: cut off once the client accepted nothing for
            # --stall-timeout (2 s); 5 s of slack for a busy machine.
            await until(lambda: metric(server, "chat_replies_dropped_total"), 3, 2 + 5)
            assert server.output().count("event=dropped reason=stalled what=reply") == 3
            assert metric(server, "chat_pending_bytes") == 0
            for sock in clients:  # the server has ended each connection (a reset: data was lost)
                sock.settimeout(5)
                with pytest.raises(ConnectionResetError):
                    while sock.recv(1 << 20):
                        pass
            assert rss_mb(pid) - before < 32
            again = raw_exchange(server.port, poll_request(), timeout=1)
            assert again.status == 200 and len(again.body) > 6_000_000
        finally:
            for sock in clients:
                sock.close()


async def test_over_max_pending_bytes_new_polls_and_streams_get_503() -> None:
    with ServerProcess("--post-rate", "0", "--max-pending-bytes", "6000000", "--metrics-cache",
                       "0", "--stall-timeout", "60", "--trusted-proxies", "127.0.0.1",
                       *BIG_REPLY) as server:
        await fill(server)
        # Two clients (two addresses), each with a reply the kernel cannot take whole.
        clients = [never_reading(server.port, poll_request(who=f"198.51.100.{i}"))
                   for i in (1, 2)]
        try:
            await until(lambda: metric(server, "chat_pending_bytes") > 6_000_000, True, 10)
            someone = "X-Forwarded-For: 203.0.113.5\r\n"
            poll = raw_exchange(server.port, poll_request(who="203.0.113.5"), timeout=1)
            assert poll.status == 503 and poll.headers["retry-after"] == "1"
            assert poll.body == b'{"error": "the server is busy sending; try again shortly"}'
            stream = raw_exchange(server.port, (
                f"GET /a/message/stream?room={ROOM} HTTP/1.1\r\nHost: x\r\n{someone}\r\n").encode(),
                timeout=1)
            assert stream.status == 503
            # Pages and posts are not refused for it.
            page = raw_exchange(server.port, f"GET / HTTP/1.1\r\nHost: x\r\n{someone}\r\n".encode(),
                                timeout=0.2)
            assert page.status == 200
        finally:
            for sock in clients:
                sock.close()  # gone: their buffers are dropped
        await until(lambda: metric(server, "chat_pending_bytes"), 0, 10)
        assert raw_exchange(server.port, poll_request(who="203.0.113.5"), timeout=1).status == 200
        assert 'chat_rate_limited_total{reason="pending_bytes"} 2.0' in raw_exchange(
            server.port, GET_METRICS, timeout=0.2).body.decode()

