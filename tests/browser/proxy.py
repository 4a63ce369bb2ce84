"""A TCP proxy for the browser tests that can drop connections and shows what went through."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import re
from collections.abc import Callable
from typing import Any

from .server import ChatServer


@dataclasses.dataclass
class Request:
    """One HTTP request head the browser sent through the proxy."""

    conn: int
    line: str
    headers: dict[str, str]  # names lower-cased


class _RequestHeads:
    """Splits one connection's client-to-server bytes into request heads (skipping bodies)."""

    def __init__(self, conn: int, out: list[Request]) -> None:
        self.conn, self.out = conn, out
        self.buffer = bytearray()
        self.body_left = 0

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.body_left:
                n = min(self.body_left, len(self.buffer))
                del self.buffer[:n]
                self.body_left -= n
                if self.body_left:
                    return
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            line, *fields = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            del self.buffer[:end + 4]
            headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
            self.out.append(Request(self.conn, line, headers))
            self.body_left = int(headers.get("content-length", "0"))


class TcpProxy:
    """A TCP proxy in front of the server that can drop every connection, as a proxy restarting
    or a flaky network would.

    It records each request head the browser sends, and everything the server sends back, per
    connection. ``cut_at(marker)`` forwards the server's bytes up to ``marker`` and then drops
    all connections, so a stream breaks in the middle of an event. ``hold()`` makes new
    connections wait (the browser sees a request that hangs) until ``release()``.
    """

    def __init__(self, upstream: ChatServer) -> None:
        self.upstream = upstream
        self.port = 0
        self.requests: list[Request] = []
        self.replies: dict[int, bytearray] = {}
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ids = itertools.count(1)
        self._open = asyncio.Event()
        self._open.set()
        self._marker: bytes | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._open.set()
        self.cut()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        """Drop every open connection at once (RST), both towards the browser and the server."""
        for writer in list(self._writers):
            writer.transport.abort()

    def cut_at(self, marker: bytes) -> None:
        self._marker = marker

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def requests_to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.line.split(" ")[1].startswith(path)]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = next(self._ids)
        self._writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            await self._open.wait()
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream.port)
            self._writers.add(up_writer)
            self.replies[conn] = bytearray()
            await asyncio.gather(self._upstream(reader, up_writer, _RequestHeads(conn, self.requests)),
                                 self._downstream(up_reader, writer, self.replies[conn]))
        except OSError:
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()
            self._tasks.discard(task)

    async def _upstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        heads: _RequestHeads) -> None:
        await self._pipe(reader, writer, heads.feed)

    async def _downstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          reply: bytearray) -> None:
        def forward(data: bytes) -> bytes | None:
            marker = self._marker
            if marker is not None and marker in data:
                self._marker = None
                return data[:data.index(marker)]  # what the browser gets before the cut
            return None

        await self._pipe(reader, writer, reply.extend, forward)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    record: Callable[[bytes], None],
                    cut: Callable[[bytes], bytes | None] = lambda data: None) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                partial = cut(data)
                if partial is not None:
                    record(partial)
                    writer.write(partial)
                    await writer.drain()
                    self.cut()
                    return
                record(data)
                writer.write(data)
                await writer.drain()
            writer.write_eof()


_FRAME = re.compile(rb"id: ([^\n]*)\nevent: ([a-z]+)\ndata: [^\n]*\n\n")


def sse_events(reply: bytes) -> list[tuple[str, str]]:
    """(event, id) of each complete SSE frame in a stream's raw (chunked) response bytes.

    Each frame is written as one chunk, so a frame's lines are never split by chunk headers.
    """
    return [(event.decode(), id_.decode()) for id_, event in _FRAME.findall(reply)]
