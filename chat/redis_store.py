"""RedisStore: rooms as Redis streams, shared by every process and host that uses the same Redis.

A publish is one Lua script (``redis_scripts.PUBLISH``): the message is in the stream before the
POST is answered. No process fans out its own posts directly: each process's one reader task
(``redis_reader.Reader``) reads every watched room's stream and hands each message to the local
hub exactly once, in stream order, whichever process accepted it. ``since`` is one Lua script too
(``redis_scripts.SINCE``), bounded by how far the reader has got, so it never returns a message
the hub has not been given yet (see the Store protocol).

Redis unreachable: publish and since raise StoreUnavailable (503), healthy() is False, and the
reader reconnects with backoff while open streams wait. The client never retries a command by
itself: a retried XADD could store a message twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Final

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, ReadOnlyError, RedisError, TimeoutError

from .buffer import Since
from .fanout import Hub
from .ids import format_id, new_epoch, parse_cursor
from .message import Message, Renderer, make_message
from .redis_reader import BLOCK_MS, Reader, to_message
from .redis_scripts import PUBLISH, SINCE, epoch_key, format_stream_id, parse_stream_id, stream_key
from .settings import Settings
from .store import StoreUnavailable

log = logging.getLogger(__name__)

# What "Redis cannot be reached right now" looks like (ReadOnlyError: a replica mid-failover).
UNAVAILABLE: Final = (ConnectionError, TimeoutError, ReadOnlyError, OSError)
# An empty room's pending epoch lives this long after it was last asked for.
PENDING_EPOCH_TTL_MS: Final = 3_600_000


def connect(url: str, timeout: float, connections: int) -> Redis:
    """A client whose commands fail after ``timeout`` instead of being retried, on a pool of at
    most ``connections`` that a burst of requests waits for (up to ``timeout``) instead of
    failing at once."""
    pool = BlockingConnectionPool.from_url(
        url, max_connections=connections, timeout=timeout, socket_timeout=timeout,
        socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0), client_name="chat")
    return Redis.from_pool(pool)


class RedisStore:
    def __init__(self, settings: Settings, hub: Hub, render: Renderer) -> None:
        self.hub = hub
        self._url = settings.store
        self._history = settings.history
        self._timeout = settings.redis_timeout
        self._render = render
        self._redis = connect(self._url, self._timeout, settings.redis_connections)
        self._publish = self._redis.register_script(PUBLISH)
        self._since = self._redis.register_script(SINCE)
        # The reader's own connection: its XREAD BLOCK may take BLOCK_MS before any reply.
        self._reader_redis = connect(self._url, self._timeout + BLOCK_MS / 1000, 1)
        self._reader = Reader(self._reader_redis, self.hub, render, settings.redis_backoff)
        self._task: asyncio.Task[None] | None = None

    async def publish(self, room: str, body: str, name: str | None) -> Message:
        ts = time.time()
        # Redis refuses the script once we would have given up on it (half the timeout leaves
        # the other half for the reply), so a 503 here means nothing was stored.
        deadline = int((ts + self._reader.clock_offset + self._timeout / 2) * 1000)
        args = [new_epoch(), self._history, deadline, body, name or "", repr(ts)]
        reply = await self._call(self._publish, room, args)
        if reply is None:
            raise StoreUnavailable("Redis ran the publish after its deadline; nothing was stored")
        epoch, stream_id = reply[0].decode(), reply[1].decode()
        self.hub.published += 1  # accepted here; the reader delivers it, here and elsewhere
        return make_message(epoch, parse_stream_id(stream_id), room, body, name, ts, self._render)

    async def since(self, room: str, cursor: str | None) -> Since:
        c_epoch = c_id = ""
        malformed = False
        if cursor is not None:
            parsed = parse_cursor(cursor)
            if parsed is None:
                malformed = True
            else:
                c_epoch = parsed.epoch
                c_id = format_stream_id(parsed.pos) if len(parsed.pos) == 2 else "x"
        upto = self._reader.position(room) or ("", "")
        epoch, last, reason, base, entries = await self._call(
            self._since, room, [self._history, upto[0] or "", upto[1], c_epoch, c_id, new_epoch(),
                                PENDING_EPOCH_TTL_MS, "since"])
        epoch, base = epoch.decode(), base.decode()
        await self._track(room, epoch, last.decode(), base)
        messages = [to_message(epoch, room, sid, raw, self._render) for sid, raw in entries]
        return Since(self._reader.given(room, messages),
                     "malformed" if malformed else reason.decode() or None,
                     format_id(epoch, parse_stream_id(base)))

    async def latest(self, room: str) -> str:
        epoch, last = await self._call(self._since, room, [
            self._history, "", "", "", "", new_epoch(), PENDING_EPOCH_TTL_MS, "latest"])
        epoch, last = epoch.decode(), last.decode()
        await self._track(room, epoch, last, last)
        return format_id(epoch, parse_stream_id(last))

    async def healthy(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except UNAVAILABLE:
            return False

    async def open(self) -> None:
        try:
            await self._reader.sync()
            await self._redis.ping()
        except UNAVAILABLE as exc:
            await self._disconnect()
            raise StoreUnavailable(f"cannot reach Redis at {self._where()}: {exc}") from exc
        self._reader.connected = True
        self._task = asyncio.create_task(self._reader.run(UNAVAILABLE), name="redis-reader")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await self._redis.delete(self._reader.wake_key)
        await self._disconnect()

    async def _disconnect(self) -> None:
        await self._reader_redis.aclose()
        await self._redis.aclose()

    def _where(self) -> str:
        return self._url.split("@")[-1]

    async def _track(self, room: str, epoch: str, last: str, base: str) -> None:
        """Have the reader read ``room`` (if watched here) and reach ``base``: the subscriber
        skips what is queued up to it, and nothing up to it may come after that."""
        if self._reader.track(room, epoch, last):
            await self._call_plain(self._reader.wake(self._redis))
        try:
            async with asyncio.timeout(self._timeout):
                await self._reader.reach(room, epoch, base)
        except TimeoutError:
            raise StoreUnavailable("the Redis reader is not keeping up; try again") from None

    async def _call(self, script: Any, room: str, args: list[Any]) -> Any:
        return await self._call_plain(script(keys=[epoch_key(room), stream_key(room)], args=args))

    async def _call_plain(self, command: Any) -> Any:
        try:
            return await command
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis at {self._where()}: {exc}") from exc
