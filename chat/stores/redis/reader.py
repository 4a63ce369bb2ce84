"""The one task per process that reads every watched room's stream and hands each message over.

It keeps, per room, the stream entry it has handed over last, and issues one ``XREAD BLOCK``
over all those rooms plus a per-process wake-up stream. A room starts being read when a local
client watches it (``track``: one script call, shared by everyone asking at once, that also
tells the listener where the room stands) and stops some seconds after its last local client
left. Every message reaches the listener once, in stream order, whichever process accepted it.

When Redis goes away the reader retries with capped, jittered backoff and resumes from the
entries it had, so nothing is lost or repeated. A history that began meanwhile sorts after the
old one in the stream, so it is read as it comes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ...core.ids import new_store_id
from ...core.message import Message, Renderer, make_message
from ..base import Listener, StoreUnavailable
from .scripts import NOTICES_KEY, PREFIX, parse_entry_id, room_of, stream_key

log = logging.getLogger(__name__)

# Longest XREAD wait; the reader connection's socket timeout is this plus the command timeout,
# which bounds how long a silently dead connection goes unnoticed.
BLOCK_MS: Final = 2000
# Entries read per room and XREAD (a burst is read in several rounds).
BATCH: Final = 1000
# Seconds a room is still read after its last local client left: a long-poller that comes
# straight back finds it read already instead of paying for a new start.
LINGER: Final = 10.0
# The wake-up stream expires this long after its last use (it outlives a kill -9 briefly).
WAKE_TTL_MS: Final = 3_600_000


def fields(raw: Any) -> dict[bytes, bytes]:
    """An entry's fields, from XREAD's dict or a script's flat list."""
    if isinstance(raw, dict):
        return raw
    return dict(zip(raw[::2], raw[1::2], strict=True))


def to_message(room: str, entry_id: bytes, raw: Any, render: Renderer) -> Message:
    f = fields(raw)
    _, seq = parse_entry_id(entry_id.decode())
    return make_message(room, f[b"e"].decode(), seq, f[b"b"].decode(), f[b"n"].decode() or None,
                        float(f[b"t"]), render)


# (room) -> (epoch or None, the history's start ms, newest seq): where a room stands in Redis.
State = Callable[[str], Awaitable[tuple[str | None, int, int]]]


class Reader:
    def __init__(self, redis: Redis, listener: Listener, render: Renderer,
                 backoff_max: float) -> None:
        self._redis = redis  # a connection of its own: XREAD BLOCK holds it
        self.listener = listener
        self._render = render
        self._backoff_max = backoff_max
        self._pos: dict[str, str] = {}  # room -> the entry id read last
        self._idle: dict[str, float] = {}
        self._starting: dict[str, asyncio.Future[None]] = {}
        self._reading: set[str] | None = None  # rooms the XREAD in flight covers
        self._woken = False
        self.wake_key = f"{PREFIX}wake:{new_store_id()}"
        self._wake_id = "0-0"
        self._notice_id = "0-0"  # the typing/presence notice read last (set by sync)
        self.connected = False
        self.closing = False  # the store is closing: run() ends (see RedisStore.close)
        # Messages this process posted, by entry id, so the reader hands over the very object
        # instead of rendering it again. Only for rooms being read; taken back on delivery.
        self.own: dict[tuple[str, str], Message] = {}
        # Redis time minus ours, in seconds: deadlines and epochs use Redis's clock.
        self.clock_offset = 0.0

    # ---- called by the store -----------------------------------------------------------

    def reading(self, room: str) -> bool:
        return room in self._pos

    async def track(self, room: str, state: State, wake: Callable[[], Awaitable[None]]) -> None:
        """Read ``room`` from where it stands now; the first caller starts it, the others wait."""
        if room in self._pos:
            self._idle.pop(room, None)
            return
        pending = self._starting.get(room)
        if pending is None:
            pending = self._starting[room] = asyncio.ensure_future(self._start(room, state, wake))
            pending.add_done_callback(lambda _: self._starting.pop(room, None))
        await asyncio.shield(pending)

    async def _start(self, room: str, state: State, wake: Callable[[], Awaitable[None]]) -> None:
        epoch, t, last = await state(room)
        if room in self._pos:
            return
        self._pos[room] = f"{t}-{last}" if epoch is not None else "0-0"
        if epoch is not None:
            self.listener.start(room, epoch, last)
        if self._reading is not None and room not in self._reading and not self._woken:
            self._woken = True
            await wake()

    async def wake(self, redis: Redis) -> None:
        """End the XREAD in flight (through the data path, so a wake-up is never lost)."""
        async with redis.pipeline(transaction=False) as pipe:
            pipe.xadd(self.wake_key, {"w": "1"}, maxlen=1, approximate=False)
            pipe.pexpire(self.wake_key, WAKE_TTL_MS)
            await pipe.execute()

    # ---- the task ------------------------------------------------------------------------

    async def run(self, unavailable: tuple[type[Exception], ...], state: State) -> None:
        delay = 0.0
        while not self.closing:
            try:
                if not self.connected:
                    await self.sync(state)
                    if delay:
                        log.warning("redis reader: connected again, reading %d rooms", len(self._pos))
                    self.connected = True
                    delay = 0.0
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, unavailable):
                    if self.connected or not delay:
                        log.warning("redis reader: %s; retrying with backoff", exc)
                elif isinstance(exc, RedisError | StoreUnavailable):  # refused (OOM): one line
                    log.warning("redis reader: Redis refused: %s; retrying with backoff",
                                " ".join(str(exc).split()))
                else:
                    log.exception("redis reader failed; retrying with backoff")
                self.connected = False
                delay = min(self._backoff_max, max(0.05, delay * 2))
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def sync(self, state: State) -> None:
        """On (re)connecting: measure the clock offset; a room whose history Redis lost (its
        newest seq is now behind ours) is read from where it stands now."""
        before = time.time()
        seconds, micros = await self._redis.time()
        now = time.time()
        self.clock_offset = seconds + micros / 1e6 - (before + now) / 2
        if self._notice_id == "0-0":  # the first time: only notices from now on
            newest: Any = await self._redis.xrevrange(NOTICES_KEY, count=1)
            if newest:
                self._notice_id = newest[0][0].decode()
        for room in list(self._pos):
            epoch, t, last = await state(room)
            pos = self._pos.get(room)
            if pos is None:
                continue
            if epoch is None or parse_entry_id(pos) > (t, last):
                self._pos[room] = f"{t}-{last}" if epoch is not None else "0-0"
                if epoch is not None:
                    self.listener.start(room, epoch, last)

    async def _read(self) -> None:
        self._forget_idle()
        streams: dict[Any, Any] = {stream_key(room): pos for room, pos in self._pos.items()}
        streams[self.wake_key] = self._wake_id
        streams[NOTICES_KEY] = self._notice_id
        self._reading = set(self._pos)
        self._woken = False
        try:
            reply: Any = await self._redis.xread(streams, count=BATCH, block=BLOCK_MS)
        finally:
            self._reading = None
        for key, entries in reply or ():
            name = key.decode()
            if name == self.wake_key:
                self._wake_id = entries[-1][0].decode()
            elif name == NOTICES_KEY:
                self._notice_id = entries[-1][0].decode()
                self._notices(entries)
            else:
                self._deliver(room_of(name), entries)

    def _deliver(self, room: str, entries: Iterable[Any]) -> None:
        if room not in self._pos:
            return
        for entry_id, raw in entries:
            eid = entry_id.decode()
            self._pos[room] = eid
            message = self.own.pop((room, eid), None)
            if message is None:
                try:
                    message = to_message(room, entry_id, raw, self._render)
                except (KeyError, ValueError) as exc:  # not written by us: skip it, do not stall
                    log.error("redis reader: skipping malformed entry %r in room %s: %r",
                              entry_id, room, exc)
                    continue
            self.listener.accept(message)

    def _notices(self, entries: Iterable[Any]) -> None:
        for _, raw in entries:
            f = {k.decode(): v.decode() for k, v in fields(raw).items()}
            room = f.get("r", "")
            if f.get("k") == "presence":
                self.listener.changed(room)
            elif f.get("k") == "typing" and self.listener.watching(room):
                self.listener.typed(room, f.get("n", ""), float(f.get("u", "0")))

    def _forget_idle(self) -> None:
        now = time.monotonic()
        for room in list(self._pos):
            if self.listener.watching(room):
                self._idle.pop(room, None)
            elif now - self._idle.setdefault(room, now) > LINGER:
                del self._pos[room], self._idle[room]
                for key in [k for k in self.own if k[0] == room]:
                    del self.own[key]
                self.listener.forget(room)
