"""The hub: this process's stream subscribers and long-poll waiters, by room. asyncio only.

A subscriber that is caught up (nothing queued, socket not pushing back, and nothing older than
what it was sent still to come) gets each message's frame, made once per message, written
straight to its transport by ``deliver``: one ``transport.write`` per client and message,
nothing else. Any other client has messages put in its bounded queue (``LazyQueue``), which its
own handler drains (``pump``); a client whose queue overflows, or whose socket stays full for
``stall_timeout``, is disconnected and counted. A publisher never waits on any client.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Final, Generic, Protocol, TypeVar

from . import logfmt, tcpinfo
from .message import PING, Message, chunk

log = logging.getLogger(__name__)

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


Item = Message | bytes | _Close  # a message, a frame without id (presence, typing), or the end


class Subscriber:
    __slots__ = ("room", "transport", "sink", "sock", "chunked", "queue", "direct", "reason",
                 "after", "acked", "stalled_since")

    def __init__(self, room: str, transport: asyncio.WriteTransport, sink: Sink,
                 chunked: bool, queue_size: int) -> None:
        self.room = room
        self.transport = transport
        self.sink = sink
        self.sock = transport.get_extra_info("socket")
        self.chunked = chunked
        self.queue: LazyQueue[Item] = LazyQueue(queue_size)
        # True while caught up: deliver may then write straight to the transport.
        self.direct = False
        # Why the hub ended this subscription ("slow", "stalled", "shutdown"), None while it runs.
        self.reason: str | None = None
        # Sort key of the newest message this client has (sent, or its cursor); None: live only.
        # Messages not newer are skipped: they were replayed, or the client had them.
        self.after: tuple[int, int] | None = None
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

    async def pump(self, hub: Hub, drain: Callable[[], Awaitable[None]],
                   caught_up: Callable[[tuple[int, int]], bool]) -> str:
        """Write queued items until the hub closes us; return the reason.

        The client goes direct once its queue is empty and ``caught_up(after)``: everything up
        to what it has has been delivered here (a store's reader may still be behind a cursor
        the client got from the store, or from another process).
        """
        queue = self.queue
        while True:
            if queue.empty() and (self.after is None or caught_up(self.after)):
                self.direct = True  # no await until the next get: nothing can slip in between
            item = await queue.get()
            out: list[bytes] = []
            sent = 0
            while True:
                if isinstance(item, _Close):  # close() emptied the queue first: it is alone
                    assert self.reason is not None and not out
                    return self.reason
                if isinstance(item, bytes):
                    out.append(item)
                elif self.after is None or item.key > self.after:
                    out.append(item.sse())
                    self.after = item.key
                    sent += 1
                if queue.empty():
                    break
                item = queue.get_nowait()
            if out:
                self.write(b"".join(out))
                hub.deliveries += sent
            await drain()


class Hub:
    """Every local stream subscriber and long-poll waiter, by room, plus the delivery counters.

    Caught-up clients are written to by ``deliver`` itself (see the module doc): measured against
    every frame going through the client's own handler task, this costs half the CPU per
    delivery at 1,000 clients and 16 % less at 5,000 (bench/README.md, "The transport bypass").
    """

    def __init__(self, queue_size: int, stall_timeout: float = 15.0) -> None:
        self.queue_size = queue_size
        self.stall_timeout = stall_timeout
        self._subs: dict[str, set[Subscriber]] = {}
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self.stream_clients = 0
        self.published = 0
        self.deliveries = 0
        self.dropped: Counter[str] = Counter()  # stream clients the hub disconnected, by reason
        # Bytes waiting in the streams' transport buffers (not yet taken by the kernel), as of
        # the last sweep: part of what --max-pending-bytes bounds.
        self.buffered = 0
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

    def rooms(self) -> set[str]:
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

    def deliver(self, message: Message) -> None:
        """Hand ``message`` to every local subscriber and waiter of its room. Never blocks."""
        room = message.room
        subs = self._subs.get(room)
        if subs:
            self._fan_out(subs, message, b"")
        waiters = self._waiters.pop(room, None)
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def broadcast(self, room: str, frame: bytes) -> None:
        """A frame without ``id:`` (presence, typing) to every stream of ``room``."""
        subs = self._subs.get(room)
        if subs:
            self._fan_out(subs, None, frame)

    def _fan_out(self, subs: set[Subscriber], message: Message | None, frame: bytes) -> None:
        raw = frame if message is None else message.sse()
        chunked = chunk(raw)
        item: Message | bytes = raw if message is None else message
        written = 0
        slow: list[Subscriber] = []
        for sub in subs:
            if sub.transport.is_closing():
                # The client has gone and its handler will unsubscribe it. Writing would
                # raise under uvloop and fail this delivery for everyone after it.
                continue
            if sub.direct and not sub.sink.writing_paused:
                sub.transport.write(chunked if sub.chunked else raw)
                written += 1
            else:
                sub.direct = False
                try:
                    sub.queue.put_nowait(item)
                except asyncio.QueueFull:
                    slow.append(sub)
        if message is not None:
            # A direct client's ``after`` is left behind on purpose: all it is queued later is
            # newer than what it was written, so the filter lets it through all the same.
            self.deliveries += written
        for sub in slow:
            self.drop(sub, "slow")

    def drop(self, sub: Subscriber, reason: str) -> None:
        """Disconnect a subscriber at once (its unsent backlog is discarded); it resumes by cursor."""
        self.unsubscribe(sub)
        sub.close(reason)
        self.dropped[reason] += 1
        peer = sub.transport.get_extra_info("peername")
        log.warning("%s", logfmt.line(event="dropped", reason=reason, room=sub.room,
                                      client=peer[0] if peer else "unknown",
                                      queued=self.queue_size if reason == "slow" else 0))
        tcpinfo.reset_on_close(sub.sock)  # the kernel frees what it still holds for it, too
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
        """Heartbeat every subscriber with nothing queued (a backlogged one has data on the way)."""
        for subs in self._subs.values():
            for sub in subs:
                if (sub.queue.empty() and not sub.sink.writing_paused
                        and not sub.transport.is_closing()):
                    sub.transport.write(_PING_CHUNK if sub.chunked else PING)

    def sweep(self, now: float) -> None:
        """Drop subscribers that accepted nothing for ``stall_timeout`` (``now`` is loop time).

        "Accepted nothing": data waits for the peer (in the kernel, or in our buffer) and the peer
        acknowledged no new byte. That is a reader that stopped reading, and also a half-open
        peer, whose next heartbeat is never acknowledged.
        """
        stalled = []
        buffered = 0
        for subs in self._subs.values():
            for sub in subs:
                buffered += sub.transport.get_write_buffer_size()
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
        self.buffered = buffered
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
