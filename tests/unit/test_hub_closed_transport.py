"""A stream client whose connection is gone must not break a publish for everyone else.

uvloop (what ``python -m chat`` runs on) raises RuntimeError when writing to a closed transport,
and a client can disconnect a moment before its handler unsubscribes it. Real sockets, real uvloop.
"""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from chat.core.hub import Hub
from chat.core.message import make_message


class _Connection(asyncio.Protocol):
    writing_paused = False

    def __init__(self, made: asyncio.Queue[tuple[_Connection, asyncio.Transport]]) -> None:
        self.made = made
        self.lost = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's, only duck-typed like them.
        self.made.put_nowait((self, cast(asyncio.Transport, transport)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


async def _publish_after_a_client_left() -> None:
    loop = asyncio.get_running_loop()
    made: asyncio.Queue[tuple[_Connection, asyncio.Transport]] = asyncio.Queue()
    server = await loop.create_server(lambda: _Connection(made), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hub = Hub(queue_size=10)
    writers: list[asyncio.StreamWriter] = []
    try:
        subs, readers = [], []
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            readers.append(reader)
            writers.append(writer)
            conn, transport = await asyncio.wait_for(made.get(), 5)
            sub = hub.subscribe("main", transport, conn, chunked=False)
            sub.direct = True  # caught up: publish writes straight to the socket
            subs.append((conn, sub))
        writers[0].transport.abort()
        await asyncio.wait_for(subs[0][0].lost.wait(), 5)  # the server saw it go; still subscribed

        message = make_message("main", "e", 1, "hi", None, 0.0, lambda *args: "<div></div>")
        hub.deliver(message)
        hub.ping()
        subs[0][1].write(b"ignored")
        frame = message.sse()
        assert await asyncio.wait_for(readers[1].readexactly(len(frame)), 5) == frame
    finally:
        for writer in writers:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


def test_publish_skips_a_client_whose_connection_is_gone() -> None:
    uvloop = pytest.importorskip("uvloop")
    uvloop.run(_publish_after_a_client_left())


def test_same_on_the_default_event_loop() -> None:
    asyncio.run(_publish_after_a_client_left())
