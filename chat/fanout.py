"""Fan-out hub: stream subscribers with bounded queues, and long-poll waiters. asyncio only.

A subscriber that is caught up (nothing queued, socket not pushing back) gets each message's
ready-made frame written straight to its transport by ``publish``: one ``transport.write`` per
client and message, nothing else. Only a client under back-pressure has messages put in its
bounded queue (``LazyQueue``), which its own handler drains (``pump``); a client whose queue
overflows, or whose socket stays full for ``stall_timeout``, is disconnected and counted.
A publisher never waits on any client.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Final, Generic, Protocol, TypeVar

from . import tcpinfo
from .ids import Cursor
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

T = TypeVar("T")


class LazyQueue(Generic[T]):
    """The part of a bounded ``asyncio.Queue`` a subscriber uses, allocating nothing until needed.

    An ``asyncio.Queue`` builds four deques and an Event up front, about 3 KB per idle stream
    client; most clients are caught up and never queue. This one holds a deque only once
    something is queued, and a future only while its one consumer waits.
    """

    __slots__ = ("maxsize", "_items", "_getter")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[T] | None = None
        self._getter: asyncio.Future[None] | None = None

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: T) -> None:
        items = self._items
        if items is None:
            items = self._items = deque()
        elif len(items) >= self.maxsize:
            raise asyncio.QueueFull
        items.append(item)
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)

    def get_nowait(self) -> T:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.popleft()

    async def get(self) -> T:
        while not self._items:
            self._getter = asyncio.get_running_loop().create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        return self._items.popleft()


class Subscriber:
    __slots__ = ("room", "transport", "sink", "sock", "chunked", "queue", "direct", "reason",
                 "acked", "stalled_since")

    def __init__(self, room: str, transport: asyncio.WriteTransport, sink: Sink,
                 chunked: bool, queue_size: int) -> None:
        self.room = room
        self.transport = transport
        self.sink = sink
        self.sock = transport.get_extra_info("socket")
        self.chunked = chunked
        self.queue: LazyQueue[Message | _Close] = LazyQueue(queue_size)
        # True while caught up: publish may then write straight to the transport.
        self.direct = False
        # Why the hub ended this subscription ("slow", "stalled", "shutdown"), None while it runs.
        self.reason: str | None = None
        # Bytes the peer had acknowledged when last looked at, and since when (loop time) it has
        # acknowledged nothing new while data waited for it; None while it makes progress.
        self.acked = -1
        self.stalled_since: float | None = None

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
                   after: Message | Cursor | None, count: Callable[[int], None]) -> str:
        """Write queued messages until the hub closes us; return the reason.

        Messages not newer than ``after`` (the last one replayed, or the cursor the client
        already has) were already sent and are skipped.
        """
        queue = self.queue
        while True:
            if queue.empty():
                self.direct = True  # no await until the next get: nothing can slip in between
            item = await queue.get()
            frames: list[bytes] = []
            while True:
                if isinstance(item, _Close):  # close() emptied the queue first: it is alone
                    assert self.reason is not None and not frames
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

    def __init__(self, queue_size: int, stall_timeout: float = 15.0) -> None:
        self.queue_size = queue_size
        self.stall_timeout = stall_timeout
        self._subs: dict[str, set[Subscriber]] = {}
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self.stream_clients = 0
        self.published = 0
        self.deliveries = 0
        self.dropped: Counter[str] = Counter()  # stream clients the hub disconnected, by reason
        self.closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, looked up once (on Python 3.11 each lookup is a getpid() system call)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    @property
    def slow_dropped(self) -> int:
        return self.dropped["slow"]

    @property
    def poll_waiters(self) -> int:
        return sum(map(len, self._waiters.values()))

    def watching(self, room: str) -> bool:
        """Has ``room`` a local stream subscriber or long-poll waiter?"""
        return room in self._subs or room in self._waiters

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
        """A message this process accepted: count it and deliver it here."""
        self.published += 1
        self.deliver(message)

    def deliver(self, message: Message) -> None:
        """Hand ``message`` to every local subscriber and waiter of its room. Never blocks.

        The memory store delivers through ``publish``; the Redis store counts what this process
        accepted and delivers every process's messages from its reader.
        """
        room = message.room
        subs = self._subs.get(room)
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
        waiters = self._waiters.pop(room, None)
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def drop(self, sub: Subscriber, reason: str) -> None:
        """Disconnect a subscriber at once (its unsent backlog is discarded); it resumes by cursor."""
        self.unsubscribe(sub)
        sub.close(reason)
        self.dropped[reason] += 1
        peer = sub.transport.get_extra_info("peername")
        log.warning("event=dropped reason=%s room=%s client=%s queued=%d", reason, sub.room,
                    peer[0] if peer else "unknown", self.queue_size if reason == "slow" else 0)
        sub.transport.abort()

    def wait(self, room: str) -> asyncio.Future[None]:
        """A future resolved by the room's next message, or by shutdown."""
        fut: asyncio.Future[None] = self.loop.create_future()
        if self.closed:
            fut.set_result(None)
        else:
            self._waiters.setdefault(room, set()).add(fut)
        return fut

    def unwait(self, room: str, fut: asyncio.Future[None]) -> bool:
        """Forget a waiter; True if it was still waiting (no message or shutdown resolved it)."""
        waiters = self._waiters.get(room)
        if waiters is None or fut not in waiters:
            return False
        waiters.remove(fut)
        if not waiters:
            del self._waiters[room]
        return True

    def ping(self) -> None:
        """Heartbeat every caught-up subscriber (a backlogged one has data on the way already)."""
        for subs in self._subs.values():
            for sub in subs:
                if sub.direct and not sub.sink.writing_paused and not sub.transport.is_closing():
                    sub.transport.write(_PING_CHUNK if sub.chunked else PING)

    def sweep(self, now: float) -> None:
        """Drop subscribers that accepted nothing for ``stall_timeout`` (``now`` is loop time).

        "Accepted nothing": data waits for the peer (in the kernel, or in our buffer) and the peer
        acknowledged no new byte. That is a reader that stopped reading, and also a half-open
        peer, whose next heartbeat is never acknowledged.
        """
        stalled = []
        for subs in self._subs.values():
            for sub in subs:
                waiting, acked = tcpinfo.progress(sub.sock)
                if not waiting and not sub.sink.writing_paused:
                    sub.stalled_since = None
                elif acked != sub.acked:
                    sub.acked = acked
                    sub.stalled_since = None
                elif sub.stalled_since is None:
                    sub.stalled_since = now
                elif now - sub.stalled_since >= self.stall_timeout:
                    stalled.append(sub)
        for sub in stalled:
            self.drop(sub, "stalled")

    async def run(self, ping_interval: float) -> None:
        """The one timer of the hub: heartbeats every ``ping_interval``, stall checks in between."""
        loop = asyncio.get_running_loop()
        tick = min(ping_interval, self.stall_timeout / 4, 1.0)  # 10k clients: ~1% of a core
        next_ping = loop.time() + ping_interval
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            if now >= next_ping - tick / 2:
                self.ping()
                next_ping = now + ping_interval
            self.sweep(now)

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
