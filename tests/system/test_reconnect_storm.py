"""A rolling restart's reconnect storm against the Redis store: 5,000 SSE clients resume with
Last-Event-ID at once on a process that has never seen the room. Every one gets 200 and exactly
the messages after its own cursor: the process reads the room from Redis about once, then
answers everyone from RAM."""

from __future__ import annotations

import asyncio
import random
import re
import resource

import pytest

from ..support import NO_LIMITS, XSRF, ServerProcess

pytestmark = pytest.mark.redis

CLIENTS = 5000
BEFORE, AFTER = 30, 5
_FRAME = re.compile(rb"id: ([a-z0-9-]+)\nevent: (message|reset)\n")


class Resumer(asyncio.Protocol):
    def __init__(self, request: bytes, want: int) -> None:
        self.request, self.want = request, want
        self.data = bytearray()
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.data += data
        if not self.data.startswith(b"HTTP/1.1 200 ") or len(self.ids()) >= self.want:
            if not self.done.done() and b"\r\n\r\n" in self.data:
                self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def status(self) -> int:
        return int(self.data[9:12]) if len(self.data) >= 12 else 0

    def ids(self) -> list[bytes]:
        return [m.group(1) for m in _FRAME.finditer(self.data) if m.group(2) == b"message"]


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * CLIENTS + 1024  # both ends of every connection, here and in the server we start
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"needs {need} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


async def _post(host: str, port: int, body: str) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    form = f"_xsrf={XSRF}&room=storm&body={body}".encode()
    writer.write(b"POST /a/message/new HTTP/1.1\r\nHost: x\r\nCookie: _xsrf=%s\r\n"
                 b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n"
                 b"Connection: close\r\n\r\n%s" % (XSRF.encode(), len(form), form))
    reply = await reader.read()
    writer.close()
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
    found = re.search(rb'"id":"([a-z0-9-]+)"', reply)
    assert found is not None
    return found.group(1)


async def test_5000_resumes_at_once_get_200_and_exactly_what_they_missed(redis_url: str) -> None:
    _raise_fd_limit()
    with ServerProcess("--store", redis_url, *NO_LIMITS, "--backlog", "8192") as first:
        ids = [await _post(first.host, first.port, f"m{i}") for i in range(BEFORE)]
    # A new process (a restart, a deploy): nothing of the room in its RAM yet.
    with ServerProcess("--store", redis_url, *NO_LIMITS, "--backlog", "8192") as server:
        rng = random.Random(7)
        cursors = [rng.randrange(BEFORE) for _ in range(CLIENTS)]
        loop = asyncio.get_running_loop()
        clients = []
        for k in cursors:
            request = (b"GET /a/message/stream?room=storm HTTP/1.1\r\nHost: x\r\n"
                       b"Last-Event-ID: %s\r\n\r\n" % ids[k])
            clients.append(Resumer(request, BEFORE - 1 - k + AFTER))

        async def connect(client: Resumer) -> None:
            for _ in range(20):  # a full accept queue refuses for a moment: what browsers retry
                try:
                    await loop.create_connection(lambda: client, server.host, server.port)
                    return
                except OSError:
                    await asyncio.sleep(0.05)
            raise AssertionError("could not connect")

        await asyncio.gather(*(connect(c) for c in clients))
        more = [await _post(server.host, server.port, f"n{i}") for i in range(AFTER)]
        await asyncio.wait_for(asyncio.gather(*(c.done for c in clients)), 120)
        statuses = [c.status() for c in clients]
        assert statuses.count(200) == CLIENTS, {s: statuses.count(s) for s in set(statuses)}
        for client, k in zip(clients, cursors, strict=True):
            assert client.ids() == ids[k + 1:] + more
            client.transport.close()
        assert "Traceback" not in server.output()
