"""Fan-out hub: stream subscribers with bounded queues, and long-poll waiters. asyncio only.

A subscriber that is caught up (nothing queued, socket not pushing back) gets each message's
ready-made frame written straight to its transport by ``publish``: one ``transport.write`` per
client and message, nothing else. Only a client under back-pressure has messages put in its
bounded ``asyncio.Queue``, which its own handler drains (``pump``); a client whose queue
overflows is disconnected and counted. A publisher never waits on any client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

from .message import Message, chunk

log = logging.getLogger(__name__)

PING: Final = b": ping\n\n"
_PING_CHUNK: Final = chunk(PING)


class Sink(Protocol):
    """What a subscriber needs of the connection's protocol (aiohttp's RequestHandler has it)."""

    @property
    def writing_paused(self) -> bool: ...


class _Close:
    """Queue sentinel: the handler stops pumping and ends the response."""


CLOSE: Final = _Close()


class Subscriber:
    __slots__ = ("room", "transport", "sink", "chunked", "queue", "direct", "reason")

    def __init__(self, room: str, transport: asyncio.WriteTransport, sink: Sink,
                 chunked: bool, queue_size: int) -> None:
        self.room = room
        self.transport = transport
        self.sink = sink
        self.chunked = chunked
        self.queue: asyncio.Queue[Message | _Close] = asyncio.Queue(queue_size)
        # True while caught up: publish may then write straight to the transport.
        self.direct = False
        # Why the hub ended this subscription ("slow", "shutdown"), None while it runs.
        self.reason: str | None = None

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():  # uvloop raises on a closed transport
            self.transport.write(chunk(data) if self.chunked else data)

    def close(self, reason: str) -> None:
        """End the subscription: whatever is queued is discarded and the handler wakes up."""
        self.reason = reason
        self.direct = False
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(CLOSE)

    async def pump(self, drain: Callable[[], Awaitable[None]],
                   after: Message | None, count: Callable[[int], None]) -> str:
        """Write queued messages until the hub closes us; return the reason.

        Messages not newer than ``after`` (the last one replayed) were already sent and are skipped.
        """
        queue = self.queue
        while True:
            if queue.empty():
                self.direct = True  # no await until the next get: nothing can slip in between
            item = await queue.get()
            frames: list[bytes] = []
            while True:
                if isinstance(item, _Close):
                    if frames:
                        self.write(b"".join(frames))
                    assert self.reason is not None
                    return self.reason
                if after is None or item.after(after.epoch, after.pos):
                    frames.append(item.sse)
                if queue.empty():
                    break
                item = queue.get_nowait()
            if frames:
                self.write(b"".join(frames))
                count(len(frames))
            await drain()


class Hub:
    """Every local stream subscriber and long-poll waiter, by room, plus the delivery counters."""

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self._subs: dict[str, set[Subscriber]] = {}
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self.stream_clients = 0
        self.published = 0
        self.deliveries = 0
        self.slow_dropped = 0
        self.closed = False

    @property
    def poll_waiters(self) -> int:
        return sum(map(len, self._waiters.values()))

    def rooms(self) -> set[str]:
        """Rooms with a local stream subscriber or long-poll waiter."""
        return self._subs.keys() | self._waiters.keys()

    def subscribe(self, room: str, transport: asyncio.WriteTransport, sink: Sink,
                  chunked: bool) -> Subscriber:
        sub = Subscriber(room, transport, sink, chunked, self.queue_size)
        if self.closed:
            sub.close("shutdown")
        else:
            self._subs.setdefault(room, set()).add(sub)
            self.stream_clients += 1
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._subs.get(sub.room)
        if subs is not None and sub in subs:
            subs.remove(sub)
            self.stream_clients -= 1
            if not subs:
                del self._subs[sub.room]

    def count(self, n: int) -> None:
        self.deliveries += n

    def publish(self, message: Message) -> None:
        """Hand ``message`` to every local subscriber and waiter of its room. Never blocks."""
        self.published += 1
        subs = self._subs.get(message.room)
        if subs:
            chunked, raw = message.sse_chunk, message.sse
            written = 0
            slow: list[Subscriber] = []
            for sub in subs:
                if sub.transport.is_closing():
                    # The client has gone and its handler will unsubscribe it. Writing would
                    # raise under uvloop and fail this publish for everyone after it.
                    continue
                if sub.direct and not sub.sink.writing_paused:
                    sub.transport.write(chunked if sub.chunked else raw)
                    written += 1
                else:
                    sub.direct = False
                    try:
                        sub.queue.put_nowait(message)
                    except asyncio.QueueFull:
                        slow.append(sub)
            self.deliveries += written
            for sub in slow:
                self.drop(sub, "slow")
        waiters = self._waiters.pop(message.room, None)
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def drop(self, sub: Subscriber, reason: str) -> None:
        """Disconnect a subscriber at once (its unsent backlog is discarded); it resumes by cursor."""
        self.unsubscribe(sub)
        sub.close(reason)
        if reason == "slow":
            self.slow_dropped += 1
            log.warning("dropped slow stream client in room %s (queue of %d full)",
                        sub.room, self.queue_size)
        sub.transport.abort()

    def wait(self, room: str) -> asyncio.Future[None]:
        """A future resolved by the room's next message, or by shutdown."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.closed:
            fut.set_result(None)
        else:
            self._waiters.setdefault(room, set()).add(fut)
        return fut

    def unwait(self, room: str, fut: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(room)
        if waiters is not None:
            waiters.discard(fut)
            if not waiters:
                del self._waiters[room]

    def ping(self) -> None:
        """Heartbeat every caught-up subscriber (a backlogged one has data on the way already)."""
        for subs in self._subs.values():
            for sub in subs:
                if sub.direct and not sub.sink.writing_paused and not sub.transport.is_closing():
                    sub.transport.write(_PING_CHUNK if sub.chunked else PING)

    async def run_pings(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.ping()

    def close(self) -> None:
        """Shutdown: end every stream (cleanly, after what is queued is discarded) and wake every poll."""
        self.closed = True
        for subs in self._subs.values():
            for sub in subs:
                sub.close("shutdown")
        self._subs.clear()
        self.stream_clients = 0
        for waiters in self._waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        self._waiters.clear()
