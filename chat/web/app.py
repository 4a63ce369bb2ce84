"""create_app(settings): the one composition root. It does no I/O; cleanup_ctx does that on startup."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from ..core.history import History
from ..core.hub import Hub
from ..core.idempotency import Ledger
from ..feed import Feed
from ..presence import Rooms
from ..settings import Settings, sqlite_path
from ..stores.base import Store
from ..stores.memory import MemoryStore
from . import errors, limits, replies, xsrf
from .keys import clock_key, feed_key, limits_key, metrics_key, settings_key, tokens_key
from .metrics import Metrics
from .routes import setup_routes
from .templating import message_renderer, setup_templating


def create_app(settings: Settings | None = None, *,
               clock: Callable[[], float] = time.monotonic) -> web.Application:
    settings = settings or Settings()
    app = web.Application(
        client_max_size=settings.max_request,
        # Outermost first: replies.deliver writes every response (within --stall-timeout, and
        # before a connection slot is given back), so it must see what the others made of it.
        middlewares=[replies.deliver, errors.json_errors, limits.apply_limits, xsrf.check_xsrf],
    )
    app[settings_key] = settings
    app[clock_key] = clock
    app[limits_key] = limits.Limits(settings, clock)
    app[metrics_key] = Metrics(app[limits_key], max_age=settings.metrics_cache, clock=clock)
    app[tokens_key] = xsrf.Tokens()
    setup_templating(app, settings)
    setup_routes(app, settings)
    app.cleanup_ctx.append(feed_ctx)
    app.cleanup_ctx.append(xsrf.secret_ctx)  # after the feed: the store may keep the secret
    app.on_response_prepare.append(replies.name_server)
    app.on_shutdown.append(end_streams)
    return app


def open_store(settings: Settings, history: History, app: web.Application) -> Store:
    render = message_renderer(app)
    if settings.store == "memory":
        # Keys pin the messages they stored: at most an eighth of the history budget's worth.
        keys = Ledger(settings.idempotency_window, settings.history_bytes // 8)
        return MemoryStore(history, render, keys)
    if sqlite_path(settings.store) is not None:
        from ..stores.sqlite.store import SQLiteStore

        return SQLiteStore(settings, render)
    from ..stores.redis.store import RedisStore  # imported only here: redis is an optional extra

    return RedisStore(settings, render)


async def feed_ctx(app: web.Application) -> AsyncIterator[None]:
    """The feed's whole life: the store opened, the hub's timer running; both stopped after."""
    settings = app[settings_key]
    hub = Hub(settings.queue_size, settings.stall_timeout)
    history = History(settings.history, settings.history_bytes,
                      authoritative=settings.store == "memory", watched=hub.watching)
    store = open_store(settings, history, app)
    rooms = Rooms(store, hub, grace=settings.presence_grace, max_names=settings.max_presence,
                  typing_seconds=settings.typing_seconds, renew=settings.presence_renew,
                  clock=app[clock_key])
    feed = Feed(store, history, hub, rooms, page_size=settings.history,
                max_reply_bytes=settings.max_reply_bytes)
    await store.open(feed)  # first: if it raises, nothing below needs undoing
    app[feed_key] = feed
    app[metrics_key].watch(feed)
    timers = [asyncio.create_task(hub.run(settings.ping_interval)),
              asyncio.create_task(rooms.run())]
    try:
        yield
    finally:
        rooms.closing = True
        await store.close()
        for timer in timers:
            timer.cancel()
        await asyncio.gather(*timers, return_exceptions=True)
        app[metrics_key].watch(None)


async def end_streams(app: web.Application) -> None:
    """on_shutdown: streams end and pending polls answer ``{}`` now, not after a timeout."""
    app[feed_key].hub.close()
