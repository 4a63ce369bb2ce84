"""Several processes on one port: gunicorn with aiohttp's worker, each process a whole server.

``python -m chat --workers 4 --store redis://127.0.0.1:6379/0`` (``make run WORKERS=4 STORE=...``)
runs gunicorn in-process with the settings from the command line. To run gunicorn yourself, with
the settings taken from CHAT_* in the environment::

    CHAT_STORE=redis://127.0.0.1:6379/0 gunicorn -c python:chat.worker -w 4 -b 127.0.0.1:8888 \\
        chat.worker:app_factory

``-c python:chat.worker`` reads this module's gunicorn settings (the lower-case names below): the
worker class (uvloop's when installed) and a start-up check that refuses more than one worker
with the memory store, whose rooms would then differ from process to process.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import sys
from typing import Any

from aiohttp import web

from .app import create_app
from .settings import Settings

PLAIN_WORKER = "aiohttp.worker.GunicornWebWorker"
UVLOOP_WORKER = "aiohttp.worker.GunicornUVLoopWebWorker"

# ---- gunicorn settings, read by ``gunicorn -c python:chat.worker`` ---------------------------
worker_class = UVLOOP_WORKER if importlib.util.find_spec("uvloop") else PLAIN_WORKER
# gunicorn 27 opens a control socket in ~/.gunicorn by default; nothing here uses it.
control_socket_disable = True


def on_starting(server: Any) -> None:
    """gunicorn hook in the master, before any worker: refuse N > 1 workers on the memory store."""
    store = _settings.store if _settings is not None else os.environ.get("CHAT_STORE", "memory")
    if server.cfg.workers > 1 and store == "memory":
        sys.exit(f"chat: error: {server.cfg.workers} workers need a shared store: the memory store "
                 "keeps each room inside one process; set CHAT_STORE=redis://host:port/db")


# ---- the application ------------------------------------------------------------------------
_settings: Settings | None = None  # set by serve() before gunicorn forks the workers


async def app_factory() -> web.AppRunner:
    """Called by aiohttp's gunicorn worker in each process; the worker sets the runner up."""
    settings = _settings
    if settings is None:
        from .__main__ import parse_settings

        settings, _ = parse_settings([])
        logging.basicConfig(level=os.environ.get("CHAT_LOG_LEVEL", "INFO"), stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .__main__ import tune_gc

    app = create_app(settings)
    app.on_startup.append(tune_gc)  # as in __main__: each worker process tunes its own collector
    return web.AppRunner(
        app,
        # As in __main__: a client that leaves cancels its handler (no waiter left behind),
        # shutdown waits at most shutdown_timeout for requests still running, and idle or
        # header-dribbling connections close after keepalive_timeout.
        handler_cancellation=True, shutdown_timeout=settings.shutdown_timeout,
        keepalive_timeout=settings.keepalive_timeout,
        access_log=logging.getLogger("aiohttp.access") if settings.access_log else None)


def serve(settings: Settings, use_uvloop: bool = True) -> None:
    """Run ``settings.workers`` processes under gunicorn until SIGTERM/SIGINT."""
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

    global _settings
    _settings = settings
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    options = {
        "bind": f"{host}:{settings.port}",
        "workers": settings.workers,
        "worker_class": worker_class if use_uvloop else PLAIN_WORKER,
        "backlog": settings.backlog,
        # A worker's shutdown ends streams and polls at once, then waits shutdown_timeout.
        "graceful_timeout": math.ceil(settings.shutdown_timeout) + 5,
        "control_socket_disable": control_socket_disable,
        "on_starting": on_starting,
    }

    class Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app_factory

    Gunicorn().run()
