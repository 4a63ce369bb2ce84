"""The Store protocol every backend keeps, MemoryStore (the embedded default), and store_ctx."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Protocol

from aiohttp import web

from .buffer import RoomBuffer, Since
from .fanout import Hub
from .ids import format_id, new_epoch, parse_cursor
from .keys import metrics_key, settings_key, store_key
from .message import Message, Renderer, make_message
from .templating import message_renderer


class StoreUnavailable(Exception):
    """The backend cannot be reached; nothing was stored (the web layer answers 503)."""


class Store(Protocol):
    """History plus local fan-out.

    ``publish`` returns once the message is in the history, and every process's hub then
    receives it exactly once, in id order. ``since`` never returns a message its process's hub has
    not been given yet, so a subscriber that subscribes *before* calling ``since`` and skips
    queued messages not newer than the replay sees every message exactly once.
    """

    hub: Hub

    async def publish(self, room: str, body: str, name: str | None) -> Message: ...

    async def since(self, room: str, cursor: str | None) -> Since:
        """Messages after ``cursor`` (None: all held), or all held ones with a reset reason."""

    async def latest(self, room: str) -> str:
        """A cursor at the room's newest message (its base when empty), for a live-only subscriber.

        Like ``since``, it is called after subscribing: every message after the returned cursor
        reaches the hub; ones up to it may reach it too (another process's reader is ahead of
        ours) and are skipped by the subscriber.
        """

    async def healthy(self) -> bool: ...

    async def open(self) -> None:
        """Connect and start background work; raise if the backend cannot be used at all."""

    async def close(self) -> None:
        """Stop background work and disconnect."""


class MemoryStore:
    """Rooms live in this process only; a restart starts a new epoch, so old cursors reset."""

    def __init__(self, history: int, hub: Hub, render: Renderer) -> None:
        self.hub = hub
        self.epoch = new_epoch()
        self._history = history
        self._render = render
        self._rooms: dict[str, RoomBuffer] = {}

    async def publish(self, room: str, body: str, name: str | None) -> Message:
        buf = self._rooms.get(room)
        if buf is None:
            buf = self._rooms[room] = RoomBuffer(self.epoch, self._history)
        message = make_message(self.epoch, (buf.last + 1,), room, body, name, time.time(),
                               self._render)
        buf.append(message)
        self.hub.publish(message)
        return message

    async def since(self, room: str, cursor: str | None) -> Since:
        buf = self._rooms.get(room)
        if buf is None:
            # A room nobody has posted to yet: an empty buffer of this epoch.
            buf = RoomBuffer(self.epoch, self._history)
        if cursor is None:
            return buf.since(None)
        found = buf.after_id(cursor)
        if found is not None:
            return found
        parsed = parse_cursor(cursor)
        if parsed is None:
            return buf.since(None)._replace(reset="malformed")
        return buf.since(parsed)

    async def latest(self, room: str) -> str:
        buf = self._rooms.get(room)
        return format_id(self.epoch, (buf.last if buf is not None else 0,))

    async def healthy(self) -> bool:
        return True

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    """The store's whole life: open it, run the heartbeat, and close it after shutdown."""
    settings = app[settings_key]
    render = message_renderer(app)
    hub = Hub(settings.queue_size, settings.stall_timeout)
    store: Store
    if settings.store == "memory":
        store = MemoryStore(settings.history, hub, render)
    else:
        from .redis_store import RedisStore  # imported only here: redis is an optional extra

        store = RedisStore(settings, hub, render)
    await store.open()  # first: if it raises, nothing below needs undoing
    app[store_key] = store
    app[metrics_key].watch(store.hub)
    pings = asyncio.create_task(hub.run(settings.ping_interval))
    try:
        yield
    finally:
        await store.close()
        pings.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pings
        app[metrics_key].watch(None)


async def end_streams(app: web.Application) -> None:
    """on_shutdown: streams end and pending polls answer ``{}`` now, not after a timeout."""
    app[store_key].hub.close()
