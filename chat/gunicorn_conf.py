"""Several processes on one port: gunicorn with aiohttp's worker, each process a whole server.

``python -m chat --workers 4 --store redis://127.0.0.1:6379/0`` runs gunicorn in-process with the
settings of its command line. To run gunicorn yourself, with the settings from CHAT_* in the
environment (``-w``/``-b`` on gunicorn's command line override CHAT_WORKERS/CHAT_HOST/CHAT_PORT)::

    CHAT_STORE=redis://127.0.0.1:6379/0 gunicorn -c python:chat.gunicorn_conf -w 4 \\
        chat.gunicorn_conf:app_factory

Either way the workers start through ``chat.server``: the same logging, loop, collector and
runner options as ``python -m chat``, and more than one worker on the memory store is refused.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import sys
from typing import Any

from aiohttp import web

from .server import configure_logging, log, make_app, runner_options, where
from .settings import Settings, parse_settings, workers_refusal

# aiohttp's workers, keeping the backlog (see chat.gunicorn_worker).
PLAIN_WORKER = "chat.gunicorn_worker.Worker"
UVLOOP_WORKER = "chat.gunicorn_worker.UVLoopWorker"

# Set by run() before gunicorn forks (python -m chat --workers N); None under gunicorn itself,
# where the settings come from the environment.
_settings: Settings | None = None


def _current() -> tuple[Settings, str]:
    if _settings is not None:
        return _settings, logging.getLevelName(logging.getLogger().level)
    settings, args = parse_settings([], prog="gunicorn chat.gunicorn_conf")
    return settings, args.log_level


def options(settings: Settings, use_uvloop: bool = True) -> dict[str, Any]:
    """gunicorn settings for ``settings``."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return {
        "bind": [f"{host}:{settings.port}"],
        "workers": settings.workers,
        "worker_class": UVLOOP_WORKER if use_uvloop and importlib.util.find_spec("uvloop")
        else PLAIN_WORKER,
        "backlog": settings.backlog,
        # A worker's shutdown ends streams and polls at once, then waits shutdown_timeout.
        "graceful_timeout": math.ceil(settings.shutdown_timeout) + 5,
        # gunicorn 27 opens a control socket in ~/.gunicorn by default; nothing here uses it.
        "control_socket_disable": True,
    }


def on_starting(server: Any) -> None:
    """gunicorn hook in the master, before any worker: logging as ``python -m chat`` sets it
    (the workers inherit it), and more than one worker on the memory store is refused."""
    settings, level = _current()
    configure_logging(level)
    why = workers_refusal(settings, server.cfg.workers)
    if why is not None:
        sys.exit(f"chat: error: {why}")


async def app_factory() -> web.AppRunner:
    """Called by aiohttp's gunicorn worker in each process; the worker sets the runner up."""
    settings, _ = _current()
    return web.AppRunner(make_app(settings), **runner_options(settings))


def run(settings: Settings, *, log_level: str = "INFO", use_uvloop: bool = True) -> None:
    """Run ``settings.workers`` processes under gunicorn until SIGTERM/SIGINT."""
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

    global _settings
    _settings = settings
    configure_logging(log_level)  # before the workers fork: they inherit it
    log.info("chat starting %d workers on %s under gunicorn", settings.workers, where(settings))
    config = {**options(settings, use_uvloop), "on_starting": on_starting}

    class Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in config.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app_factory

    Gunicorn().run()


# ---- what ``gunicorn -c python:chat.gunicorn_conf`` reads: its settings, from CHAT_* ----------
globals().update(options(_current()[0]))
