"""The one task per process that reads every watched room's stream and feeds the local hub.

It keeps, per room, how far the hub has been given the room (an epoch and a stream id) and
issues one ``XREAD BLOCK`` over all those rooms plus a per-process wake-up stream. A room starts
being read when a local client asks the store about it (``track``, from ``since``/``latest``)
and stops some seconds after its last local client left. The store uses ``given`` to hand out
only messages the hub has been given already: a subscriber then never sees one twice.

When Redis goes away the reader retries with capped, jittered backoff and resumes from the ids
it had, so nothing is lost or repeated. A room whose history was lost meanwhile (its newest
entry has another epoch, or it has none) is read again from the start of its new history.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable
from typing import Any, Final

from redis.asyncio import Redis

from .fanout import Hub
from .ids import new_epoch
from .message import Message, Renderer, make_message
from .redis_scripts import PREFIX, parse_stream_id, room_of, stream_key

log = logging.getLogger(__name__)

# Longest XREAD wait; the reader connection's socket timeout is this plus the command timeout,
# which bounds how long a silently dead connection goes unnoticed.
BLOCK_MS: Final = 2000
# Entries read per room and XREAD (a burst is read in several rounds).
BATCH: Final = 1000
# Seconds a room is still read after its last local client left: a long-poller that comes
# straight back finds it tracked instead of paying for a new registration.
LINGER: Final = 10.0
# The wake-up stream expires this long after its last use (it outlives a kill -9 briefly).
WAKE_TTL_MS: Final = 3_600_000

Position = tuple[str | None, str]  # (epoch, stream id); epoch None: adopt the next one seen


def fields(raw: Any) -> dict[bytes, bytes]:
    """An entry's fields, from XREAD's dict or a script's flat list."""
    if isinstance(raw, dict):
        return raw
    return dict(zip(raw[::2], raw[1::2], strict=True))


def to_message(epoch: str, room: str, stream_id: bytes, raw: Any, render: Renderer) -> Message:
    f = fields(raw)
    return make_message(epoch, parse_stream_id(stream_id.decode()), room, f[b"body"].decode(),
                        f[b"name"].decode() or None, float(f[b"ts"]), render)


class Reader:
    def __init__(self, redis: Redis, hub: Hub, render: Renderer, backoff_max: float) -> None:
        self._redis = redis  # a connection of its own: XREAD BLOCK holds it
        self.hub = hub
        self._render = render
        self._backoff_max = backoff_max
        self._pos: dict[str, Position] = {}
        self._idle: dict[str, float] = {}
        self._reading: set[str] | None = None  # rooms the XREAD in flight covers
        self._woken = False
        self._advanced = asyncio.Event()  # set (and replaced) whenever the hub was given more
        self.wake_key = f"{PREFIX}wake:{new_epoch()}"
        self._wake_id = "0-0"
        self.connected = False
        # Redis time minus ours, in seconds: publish turns its deadline into Redis time with it.
        self.clock_offset = 0.0

    # ---- called by the store; synchronous, so nothing interleaves ------------------------

    def track(self, room: str, epoch: str, last: str) -> bool:
        """Read ``room`` after ``last`` if a local client watches it and it is not read yet.

        True when the XREAD in flight must be woken to include it.
        """
        if room in self._pos or not self.hub.watching(room):
            return False
        self._pos[room] = (epoch, last)
        self._idle.pop(room, None)
        if self._reading is not None and room not in self._reading and not self._woken:
            self._woken = True
            return True
        return False

    def position(self, room: str) -> Position | None:
        return self._pos.get(room)

    async def reach(self, room: str, epoch: str, stream_id: str) -> None:
        """Wait until the hub has been given ``room`` up to ``stream_id`` of ``epoch``.

        A client may hold a cursor another process's reader handed out a moment before ours
        reads it. Once a subscriber writes straight to its socket nothing filters what the
        hub gives it, so every message up to its cursor must reach the hub (and its queue,
        where they are skipped) first. Untracked rooms and other epochs need no wait.
        """
        target = parse_stream_id(stream_id)
        while target != (0, 0):
            pos = self._pos.get(room)
            if pos is None or pos[0] not in (None, epoch) or parse_stream_id(pos[1]) >= target:
                return
            await self._advanced.wait()

    def given(self, room: str, messages: list[Message]) -> list[Message]:
        """The leading ``messages`` the hub has been given; all when no local client watches."""
        pos = self._pos.get(room)
        if pos is None:
            return messages
        epoch, last = pos
        bound = parse_stream_id(last)
        return [m for m in messages if m.epoch == epoch and m.pos <= bound]

    async def wake(self, redis: Redis) -> None:
        """End the XREAD in flight (through the data path, so a wake-up is never lost)."""
        async with redis.pipeline(transaction=False) as pipe:
            pipe.xadd(self.wake_key, {"w": "1"}, maxlen=1, approximate=False)
            pipe.pexpire(self.wake_key, WAKE_TTL_MS)
            await pipe.execute()

    # ---- the task ------------------------------------------------------------------------

    async def run(self, unavailable: tuple[type[Exception], ...]) -> None:
        delay = 0.0
        while True:
            try:
                if not self.connected:
                    await self.sync()
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
                else:
                    log.exception("redis reader failed; retrying with backoff")
                self.connected = False
                delay = min(self._backoff_max, max(0.05, delay * 2))
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def sync(self) -> None:
        """On (re)connecting: measure the clock offset and re-check each room's epoch."""
        before = time.time()
        seconds, micros = await self._redis.time()
        now = time.time()
        self.clock_offset = seconds + micros / 1e6 - (before + now) / 2
        rooms = list(self._pos)
        if not rooms:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.xrevrange(stream_key(room), count=1)
            newest = await pipe.execute()
        for room, entries in zip(rooms, newest, strict=True):
            pos = self._pos.get(room)
            if pos is None:
                continue
            epoch = fields(entries[0][1]).get(b"e", b"").decode() if entries else None
            if epoch != pos[0]:
                self._pos[room] = (None, "0-0")  # the history was lost: read the new one whole

    async def _read(self) -> None:
        self._forget_idle()
        streams: dict[Any, Any] = {stream_key(room): pos[1] for room, pos in self._pos.items()}
        streams[self.wake_key] = self._wake_id
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
            else:
                self._deliver(room_of(name), entries)
        self._advanced.set()
        self._advanced = asyncio.Event()

    def _deliver(self, room: str, entries: Iterable[Any]) -> None:
        pos = self._pos.get(room)
        if pos is None:
            return
        epoch = pos[0]
        for stream_id, raw in entries:
            e = fields(raw).get(b"e", b"").decode()
            if e != epoch:
                if epoch is not None:
                    # The stream was re-created under us: read its new history from the start.
                    self._pos[room] = (None, "0-0")
                    return
                epoch = e
            self._pos[room] = (e, stream_id.decode())
            try:
                message = to_message(e, room, stream_id, raw, self._render)
            except (KeyError, ValueError) as exc:  # not written by us: skip it, do not stall
                log.error("redis reader: skipping malformed entry %r in room %s: %r",
                          stream_id, room, exc)
                continue
            self.hub.deliver(message)

    def _forget_idle(self) -> None:
        now = time.monotonic()
        for room in list(self._pos):
            if self.hub.watching(room):
                self._idle.pop(room, None)
            elif now - self._idle.setdefault(room, now) > LINGER:
                del self._pos[room], self._idle[room]
