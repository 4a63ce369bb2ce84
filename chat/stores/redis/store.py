"""RedisStore: rooms as Redis streams, shared by every process and host that uses the same Redis.

A publish is one Lua script (``scripts.PUBLISH``): the message is in the stream before the POST
is answered. No process hands its own posts to its clients directly: each process's one reader
task (``reader.Reader``) reads every watched room's stream and hands each message over exactly
once, in stream order, whichever process accepted it. A read is one Lua script too
(``scripts.READ``) and writes nothing.

Redis unreachable, or refusing a command (OOM at maxmemory): publish and read raise
StoreUnavailable (503, one log line), healthy() is False (it checks that Redis takes a write), and the
reader reconnects with backoff while open streams wait. The client never retries a command by
itself: a retried XADD could store a message twice. A request waits its turn for one of
``--redis-connections`` connections for up to ``--redis-timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import secrets
import time
from typing import Any, Final

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ConnectionError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TimeoutError,
)

from ...core.idempotency import fingerprint
from ...core.ids import Room, epoch_ms, new_store_id
from ...core.message import Message, Renderer, make_message
from ...core.presence import View
from ...settings import Settings
from ..base import KeyConflict, Listener, Posted, StoreUnavailable
from . import scripts
from .reader import BLOCK_MS, Reader, to_message
from .scripts import (
    EPOCH_KEY,
    HEALTH_KEY,
    PUBLISH,
    READ,
    ROOMS_KEPT,
    ROOMS_KEY,
    SECRET_KEY,
    meta_key,
    stream_key,
)

log = logging.getLogger(__name__)

SHARE_ROOMS_EVERY: Final = 1.0  # seconds between adding this process's posted rooms to ROOMS_KEY

# What "Redis cannot be reached right now" looks like (ReadOnlyError: a replica mid-failover).
UNAVAILABLE: Final = (ConnectionError, TimeoutError, ReadOnlyError, OSError)


def connect(url: str, timeout: float, connections: int) -> Redis:
    """A client whose commands fail after ``timeout`` instead of being retried, on a pool of at
    most ``connections`` that a burst of requests waits for (up to ``timeout``) instead of
    failing at once."""
    pool = BlockingConnectionPool.from_url(
        url, max_connections=connections, timeout=timeout, socket_timeout=timeout,
        socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0), client_name="chat")
    return Redis.from_pool(pool)


class RedisStore:
    def __init__(self, settings: Settings, render: Renderer) -> None:
        self.store_id = ""  # the deployment's, read from Redis by open()
        self._url = settings.store
        self._retain = settings.retain_messages
        self._retain_ms = int(settings.retain_days * 86400 * 1000)
        # With --retain-days, a room also lives at most that long after its last post (every
        # message in it has expired by then), so a quiet room does not keep expired messages.
        self._ttl_ms = min(int(settings.room_ttl * 1000), self._retain_ms or 1 << 62)
        self._key_window_ms = int(settings.idempotency_window * 1000)
        self._timeout = settings.redis_timeout
        self._backoff = settings.redis_backoff
        self._render = render
        self._redis = connect(self._url, self._timeout, settings.redis_connections)
        self._publish = self._redis.register_script(PUBLISH)
        self._read = self._redis.register_script(READ)
        # The reader's own connection: its XREAD BLOCK may take BLOCK_MS before any reply.
        self._reader_redis = connect(self._url, self._timeout + BLOCK_MS / 1000, 1)
        self._process = new_store_id()  # this process's field in presence hashes
        self._reader: Reader | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._posted: dict[str, float] = {}  # room -> its newest post here, not yet in ROOMS_KEY
        # Set by close() before it cancels the tasks: redis-py can swallow a cancellation that
        # lands inside a command, and a loop that only waited for the cancel would go on forever.
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._reader is not None and self._reader.connected

    # ---- clocks ----------------------------------------------------------------------------

    def now_ms(self) -> int:
        offset = self._reader.clock_offset if self._reader is not None else 0.0
        return int((time.time() + offset) * 1000)

    def forgot_between(self, since_ms: int, until_ms: int) -> bool:
        # A history lives at least --room-ttl after it began (every post renews it), so a
        # history that began and expired in between needs at least that long.
        return until_ms - since_ms >= self._ttl_ms

    # ---- writing ---------------------------------------------------------------------------

    async def publish(self, room: str, body: str, name: str | None,
                      client_key: str | None = None) -> Posted:
        ts = time.time()
        # Redis refuses the script once we would have given up on it (half the timeout leaves
        # the other half for the reply), so a 503 here means nothing was stored.
        deadline = self.now_ms() + int(self._timeout * 500)
        args: list[Any] = [new_store_id(), self._retain, self._ttl_ms, deadline, body,
                           name or "", repr(ts), self._retain_ms]
        keys = self._keys(room)
        if client_key is not None:
            keys.append(scripts.client_key(room, client_key))
            args += [fingerprint(body, name), self._key_window_ms]
        reply = await self._call(self._publish(keys=keys, args=args))
        if reply is None:
            raise StoreUnavailable("Redis ran the publish after its deadline; nothing was stored")
        if reply[0] == b"conflict":
            raise KeyConflict()
        epoch, seq = reply[0].decode(), int(reply[1])
        if len(reply) == 5:  # the key stored this message before: the same message again
            first = make_message(room, epoch, seq, reply[2].decode(), reply[3].decode() or None,
                                 float(reply[4]), self._render)
            return Posted(first, replayed=True)
        message = make_message(room, epoch, seq, body, name, ts, self._render)
        self._posted[room] = ts
        reader = self._reader
        if reader is not None and reader.reading(room):  # the reader hands over this very object
            reader.own[(room, f"{epoch_ms(epoch)}-{seq}")] = message
        return Posted(message)

    # ---- reading ---------------------------------------------------------------------------

    async def read(self, room: str, after: int | None, limit: int) -> tuple[Room, list[Message]]:
        mode = "newest" if after is None else "after"
        return await self._run_read(room, [mode, after or 0, limit, ""])

    async def older(self, room: str, epoch: str, before: int,
                    limit: int) -> tuple[Room, list[Message]]:
        return await self._run_read(room, ["before", before, limit, epoch])

    async def _run_read(self, room: str, args: list[Any]) -> tuple[Room, list[Message]]:
        store, epoch, t, last, floor, entries = await self._call(
            self._read(keys=self._keys(room), args=args))
        self._store_id_is(store)
        if not epoch:
            return Room(None, asof=int(t)), []
        messages = [to_message(room, eid, raw, self._render) for eid, raw in entries]
        return Room(epoch.decode(), int(floor), int(last)), messages

    async def _state(self, room: str) -> tuple[str | None, int, int]:
        store, epoch, t, last, _, _ = await self._call(
            self._read(keys=self._keys(room), args=["state", 0, 0, ""]))
        self._store_id_is(store)
        return (epoch.decode() if epoch else None), int(t), int(last)

    def _store_id_is(self, store: bytes | None) -> None:
        if store:
            self.store_id = store.decode()

    async def watch(self, room: str) -> None:
        assert self._reader is not None
        await self._reader.track(room, self._state,
                                 lambda: self._call(self._reader_wake()))

    async def _reader_wake(self) -> None:
        assert self._reader is not None
        try:
            await self._reader.wake(self._redis)
        except ResponseError:
            # Refused (OOM at maxmemory): the XREAD in flight ends within BLOCK_MS anyway, and
            # the next one reads the new room. A follower of an existing room is still served.
            pass

    def settled(self, room: str) -> bool:
        return False  # another process may have stored a message our reader has not read yet

    # ---- the room list -----------------------------------------------------------------------

    async def recent(self, limit: int) -> list[tuple[str, float]]:
        found = await self._call(self._redis.zrevrange(ROOMS_KEY, 0, limit - 1, withscores=True))
        expired = self._expired_before()
        return [(room.decode(), ts) for room, ts in found if ts > expired]

    def _expired_before(self) -> float:
        """A room whose newest message is older than this (Unix seconds) has expired."""
        return time.time() - self._ttl_ms / 1000

    async def _share_rooms(self) -> None:
        """Add the rooms posted to here since the last call to ROOMS_KEY (one round trip for
        all of them), then trim it; on failure they are shared with the next call."""
        posted, self._posted = self._posted, {}
        if not posted:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(ROOMS_KEY, posted, gt=True)  # (GT: never back to an older time)
            pipe.zremrangebyscore(ROOMS_KEY, "-inf", self._expired_before())
            pipe.zremrangebyrank(ROOMS_KEY, 0, -ROOMS_KEPT - 1)
            try:
                await self._call(pipe.execute())
            except StoreUnavailable:
                for room, ts in posted.items():
                    self._posted.setdefault(room, ts)
                if len(self._posted) > ROOMS_KEPT:  # no more than the set would keep
                    self._posted = dict(heapq.nlargest(ROOMS_KEPT, self._posted.items(),
                                                       key=lambda item: item[1]))
                raise

    async def _share_rooms_every(self, seconds: float) -> None:
        while not self._closing:
            await asyncio.sleep(seconds)
            try:
                await self._share_rooms()
            except StoreUnavailable as exc:
                log.debug("redis: room list not shared now: %s", exc)

    # ---- presence and typing: shared through Redis, never stored with the history -------------

    async def share(self, room: str, view: View, ttl: float) -> None:
        key = scripts.presence_key(room)
        async with self._redis.pipeline(transaction=False) as pipe:
            if view.names or view.unnamed:
                expires = self.now_ms() + int(ttl * 1000)
                names = json.dumps(sorted(view.names), ensure_ascii=False)
                pipe.hset(key, self._process, f"{expires} {view.unnamed} {names}")
                pipe.pexpire(key, int(ttl * 1000))
            else:
                pipe.hdel(key, self._process)
            self._notice(pipe, {"k": "presence", "r": room})
            await self._call(pipe.execute())

    async def views(self, rooms: list[str]) -> dict[str, list[View]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.hgetall(scripts.presence_key(room))
            replies = await self._call(pipe.execute())
        now, found = self.now_ms(), {}
        for room, fields in zip(rooms, replies, strict=True):
            views = []
            for process, value in fields.items():
                expires, unnamed, names = value.decode().split(" ", 2)
                if process.decode() != self._process and int(expires) > now:
                    views.append(View(frozenset(json.loads(names)), int(unnamed)))
            found[room] = views
        return found

    async def typing(self, room: str, name: str, until: float) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            self._notice(pipe, {"k": "typing", "r": room, "n": name, "u": repr(until)})
            await self._call(pipe.execute())

    @staticmethod
    def _notice(pipe: Any, fields: dict[str, str]) -> None:
        pipe.xadd(scripts.NOTICES_KEY, fields, maxlen=scripts.NOTICES_KEPT, approximate=True)

    # ---- life ------------------------------------------------------------------------------

    async def secret(self) -> bytes:
        # Read first: a Redis at maxmemory refuses the SET even when the key exists.
        value = await self._call(self._redis.get(SECRET_KEY))
        if value is None:
            await self._call(self._redis.set(SECRET_KEY, secrets.token_hex(32), nx=True))
            value = await self._call(self._redis.get(SECRET_KEY))
        return bytes.fromhex(value.decode())

    async def healthy(self) -> bool:
        """Does Redis accept a write now? A Redis at maxmemory under noeviction answers PING
        but refuses every post: a balancer should know."""
        try:
            return bool(await self._redis.set(HEALTH_KEY, "1", px=60_000))
        except RedisError:
            return False

    async def open(self, listener: Listener) -> None:
        self._reader = Reader(self._reader_redis, listener, self._render, self._backoff)
        try:
            store = await self._redis.get(EPOCH_KEY)  # read first: at maxmemory a SET is refused
            if store is None:
                await self._redis.set(EPOCH_KEY, new_store_id(), nx=True)
                store = await self._redis.get(EPOCH_KEY)
            self._store_id_is(store)  # type: ignore[arg-type]
            await self._reader.sync(self._state)
        except (*UNAVAILABLE, RedisError) as exc:
            await self._disconnect()
            raise StoreUnavailable(f"cannot reach Redis at {self._where()}: {exc}") from exc
        self._reader.connected = True
        self._tasks = [asyncio.create_task(self._reader.run(UNAVAILABLE, self._state),
                                           name="redis-reader"),
                       asyncio.create_task(self._share_rooms_every(SHARE_ROOMS_EVERY),
                                           name="redis-rooms")]

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(StoreUnavailable):
            await self._share_rooms()  # the last second's posts
        if self._reader is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.delete(self._reader.wake_key)
        await self._disconnect()

    async def _disconnect(self) -> None:
        await self._reader_redis.aclose()
        await self._redis.aclose()

    def _where(self) -> str:
        return self._url.split("@")[-1]

    @staticmethod
    def _keys(room: str) -> list[str]:
        return [meta_key(room), stream_key(room), EPOCH_KEY]

    async def _call(self, command: Any) -> Any:
        """Any Redis failure is StoreUnavailable (a 503 and one log line): out of reach, and
        also a command Redis refused, such as OOM at maxmemory under noeviction."""
        try:
            return await command
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis at {self._where()}: {exc}") from exc
        except RedisError as exc:
            raise StoreUnavailable(
                f"Redis at {self._where()} refused the command: {' '.join(str(exc).split())}"
            ) from exc
