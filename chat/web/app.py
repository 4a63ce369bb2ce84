"""create_app(settings): the one composition root. It does no I/O; cleanup_ctx does that on startup."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from aiohttp import web

from ..core.history import History
from ..core.hub import Hub
from ..core.idempotency import Ledger
from ..feed import Feed
from ..settings import Settings
from ..stores.base import Store
from ..stores.memory import MemoryStore
from . import errors, limits, xsrf
from .keys import feed_key, limits_key, metrics_key, settings_key
from .metrics import Metrics
from .routes import setup_routes
from .templating import message_renderer, setup_templating


def create_app(settings: Settings | None = None) -> web.Application:
    settings = settings or Settings()
    app = web.Application(
        client_max_size=settings.max_request,
        middlewares=[errors.security_headers, errors.json_errors, limits.apply_limits,
                     xsrf.check_xsrf],
    )
    app[settings_key] = settings
    app[limits_key] = limits.Limits(settings)
    app[metrics_key] = Metrics(app[limits_key])
    setup_templating(app, settings)
    setup_routes(app, settings)
    app.cleanup_ctx.append(feed_ctx)
    app.on_shutdown.append(end_streams)
    return app


def open_store(settings: Settings, history: History, app: web.Application) -> Store:
    render = message_renderer(app)
    if settings.store == "memory":
        # Keys pin the messages they stored: at most an eighth of the history budget's worth.
        keys = Ledger(settings.idempotency_window, settings.history_bytes // 8)
        return MemoryStore(history, render, keys)
    from ..stores.redis.store import RedisStore  # imported only here: redis is an optional extra

    return RedisStore(settings, render)


async def feed_ctx(app: web.Application) -> AsyncIterator[None]:
    """The feed's whole life: the store opened, the hub's timer running; both stopped after."""
    settings = app[settings_key]
    hub = Hub(settings.queue_size, settings.stall_timeout, direct=not plain_fanout())
    history = History(settings.history, settings.history_bytes,
                      authoritative=settings.store == "memory", watched=hub.watching)
    store = open_store(settings, history, app)
    feed = Feed(store, history, hub, page_size=settings.history,
                max_reply_bytes=settings.max_reply_bytes)
    await store.open(feed)  # first: if it raises, nothing below needs undoing
    app[feed_key] = feed
    app[metrics_key].watch(feed)
    timer = asyncio.create_task(hub.run(settings.ping_interval))
    try:
        yield
    finally:
        await store.close()
        timer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await timer
        app[metrics_key].watch(None)


def plain_fanout() -> bool:
    """Bench only, not a setting: ``CHAT_BENCH_PLAIN_FANOUT=1`` turns the hub's transport bypass
    off (``Hub(direct=False)``: every frame goes through the subscriber's own handler task), so
    ``python -m bench --fanout plain`` can measure what the bypass saves (bench/README.md, "The
    transport bypass"). No deployment has a reason to set it."""
    return os.environ.get("CHAT_BENCH_PLAIN_FANOUT") == "1"


async def end_streams(app: web.Application) -> None:
    """on_shutdown: streams end and pending polls answer ``{}`` now, not after a timeout."""
    app[feed_key].hub.close()
