"""create_app(settings): the one composition root. It does no I/O; cleanup_ctx does that on startup."""

from __future__ import annotations

from aiohttp import web

from . import errors, ratelimit, xsrf
from .keys import limits_key, metrics_key, settings_key
from .metrics import Metrics
from .routes import setup_routes
from .settings import Settings
from .store import end_streams, store_ctx
from .templating import setup_templating


def create_app(settings: Settings | None = None) -> web.Application:
    settings = settings or Settings()
    app = web.Application(
        client_max_size=settings.max_request,
        middlewares=[errors.security_headers, errors.json_errors, ratelimit.apply_limits,
                     xsrf.check_xsrf],
    )
    app[settings_key] = settings
    app[limits_key] = limits = ratelimit.Limits(settings)
    app[metrics_key] = Metrics(limits)
    setup_templating(app, settings)
    setup_routes(app, settings)
    app.cleanup_ctx.append(store_ctx)
    app.on_shutdown.append(end_streams)
    return app
