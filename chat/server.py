"""The one start-up path: ``python -m chat``, ``--workers N`` and gunicorn itself all come here.

Logging (with the filter that makes a client's malformed request one quiet line), the event
loop, the garbage collector's tuning and the runner's options are set up by these functions
only; ``chat.gunicorn_conf`` uses the same ones in every worker.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from typing import Any

from aiohttp import web

from .logs import quiet_client_errors
from .settings import Settings
from .stores.base import StoreInUse, StoreUnavailable
from .web.app import create_app
from .web.replies import SERVER

log = logging.getLogger("chat")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Log to stderr at ``level``; a malformed request is one INFO line. Idempotent."""
    logging.basicConfig(level=level, stream=sys.stderr, format=LOG_FORMAT)
    quiet_client_errors()


def runner_options(settings: Settings) -> dict[str, Any]:
    """What web.AppRunner is given, by run_app here and by aiohttp's gunicorn worker."""
    return {
        # Cancel a handler when its client disconnects (the test server does this too): a
        # long-poll whose client left must not keep its waiter until the timeout.
        "handler_cancellation": True,
        # on_shutdown ends every stream and poll at once; this only bounds requests still running.
        "shutdown_timeout": settings.shutdown_timeout,
        # Closes idle connections, and ones still dribbling their request headers (slowloris):
        # aiohttp's timer runs from the connection's start until a whole request has arrived.
        "keepalive_timeout": settings.keepalive_timeout,
        "access_log": logging.getLogger("aiohttp.access") if settings.access_log else None,
        # A request Content-Encoding is refused (415) unread, so nothing needs inflating; off,
        # aiohttp's parser never inflates a body either, not even the part it reads to discard.
        "auto_decompress": False,
    }


# The collector's default gen-0 threshold (700) runs a collection every few requests once
# thousands of clients are connected, and each collection ages the objects of every waiting
# request into the older generations that full collections then walk. A larger threshold lets
# request garbage die young. Measured on long-poll, 1,000 waiters, 20 messages/s: server CPU per
# delivery about 150 -> 95 us (bench/README.md).
GC_THRESHOLD = (50_000, 20, 20)


async def tune_gc(app: web.Application) -> None:
    """After startup: what startup made lives for good, so no collection has to walk it again."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def raise_open_files() -> None:
    """Every stream, poll and keep-alive connection is a file descriptor: take the hard limit
    (a common soft default is 1,024), and say what it is."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("open files limit stays %d (hard %d): %s", soft, hard, exc)
            return
        log.info("open files limit raised from %d to the hard limit %d", soft, hard)
    else:
        log.info("open files limit %d (hard %s)", soft,
                 "unlimited" if hard == resource.RLIM_INFINITY else hard)


def hide_version() -> None:
    """Responses aiohttp makes before any route runs (a malformed request's 400) say ``Server:
    chat`` too, like the application's (chat.web.replies): no versions for a scanner to match.
    aiohttp reads this default from its module each time it makes a response."""
    import aiohttp.web_response

    aiohttp.web_response.SERVER_SOFTWARE = SERVER  # type: ignore[attr-defined]


def make_app(settings: Settings) -> web.Application:
    """The application, and what this process sets for itself (so here, not in create_app)."""
    raise_open_files()
    hide_version()
    app = create_app(settings)
    app.on_startup.append(tune_gc)
    return app


def event_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def where(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.port}, store {settings.store.split('@')[-1]}"


def serve(settings: Settings, *, log_level: str = "INFO", use_uvloop: bool = True) -> None:
    """Serve in this process until SIGTERM/SIGINT (``--workers N``: ``gunicorn_conf.run``)."""
    configure_logging(log_level)
    loop = event_loop(use_uvloop)
    log.info("chat starting on %s, event loop %s", where(settings),
             type(loop).__module__.split(".")[0])
    try:
        web.run_app(make_app(settings), host=settings.host, port=settings.port, loop=loop,
                    backlog=settings.backlog, **runner_options(settings),
                    print=lambda text: log.info("%s", " ".join(text.replace("=", "").split())))
    except StoreUnavailable as exc:  # at startup: one line, not a traceback
        log.error("%s", exc)
        raise SystemExit(2 if isinstance(exc, StoreInUse) else 1) from None
