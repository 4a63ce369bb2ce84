"""``python -m chat``: command line and CHAT_* environment -> Settings -> web.run_app."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import ipaddress
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from . import logs
from .app import create_app
from .settings import Settings
from .store import StoreUnavailable

log = logging.getLogger("chat")


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {low} to {high}, got {value}")
        return value

    return parse


def _float_range(low: float, high: float, what: str, *, low_ok: bool) -> Callable[[str], float]:
    """A number in (low, high], or [low, high] when ``low_ok``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (low <= value if low_ok else low < value) or not value <= high:
            bound = f"{low:g} to {high:.0f}" if low_ok else f"more than {low:g} and at most {high:.0f}"
            raise argparse.ArgumentTypeError(f"expected {bound}, got {text}")
        return value

    return parse


_seconds = _float_range(0, 86400, "seconds", low_ok=False)
_rate = _float_range(0, 1_000_000, "a number", low_ok=True)


def _networks(text: str) -> tuple[str, ...]:
    values = tuple(part.strip() for part in text.split(",") if part.strip())
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated addresses or networks, got {value!r}") from None
    return values


def _store(text: str) -> str:
    if text == "memory" or text.startswith(("redis://", "rediss://", "unix://")):
        return text
    raise argparse.ArgumentTypeError(f"expected 'memory' or a redis:// URL, got {text!r}")


# RFC 6750's b64token: what a generated key is made of (secrets.token_urlsafe, hex, base64).
_API_KEY_RE = re.compile(r"[A-Za-z0-9._~+/-]+=*")


def _api_keys(text: str) -> tuple[str, ...]:
    """Comma-separated bearer keys. An error names a key by its place, never by its value."""
    keys = tuple(part.strip() for part in text.split(",") if part.strip())
    for place, key in enumerate(keys, 1):
        if not _API_KEY_RE.fullmatch(key):
            raise argparse.ArgumentTypeError(
                f"API key {place} of {len(keys)} has a character a bearer token cannot have "
                "(use A-Z a-z 0-9 - . _ ~ + /, e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')")
    return keys


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected 1/0, true/false, yes/no or on/off, got {text!r}")


# (option, Settings field, parser, help). Each is also read from CHAT_<FIELD> in the environment.
OPTIONS: list[tuple[str, str, Callable[[str], Any], str]] = [
    ("--host", "host", str, "address to listen on"),
    ("--port", "port", _int_range(0, 65535), "TCP port (0: any free port)"),
    ("--store", "store", _store, "'memory' (one process) or redis://host:port/db"),
    ("--workers", "workers", _int_range(1, 1024),
     "processes serving the port, under gunicorn (more than 1 needs --store redis://...)"),
    ("--redis-timeout", "redis_timeout", _seconds,
     "seconds a Redis command may take before the request is answered 503"),
    ("--redis-backoff", "redis_backoff", _seconds,
     "longest pause between attempts to reach Redis again after losing it"),
    ("--redis-connections", "redis_connections", _int_range(1, 10_000),
     "Redis connections per process for requests; more wait up to --redis-timeout"),
    ("--history", "history", _int_range(1, 1_000_000), "messages kept per room for resuming"),
    ("--max-body", "max_body", _int_range(1, 1_000_000),
     "longest message body, in characters after trimming"),
    ("--max-name", "max_name", _int_range(1, 1000), "longest nickname, in characters"),
    ("--max-request", "max_request", _int_range(1024, 64 * 1024 * 1024),
     "largest request body, in bytes (larger gets 413)"),
    ("--poll-timeout", "poll_timeout", _seconds, "seconds a long-poll waits before answering {}"),
    ("--ping-interval", "ping_interval", _seconds, "seconds between SSE ': ping' heartbeats"),
    ("--queue-size", "queue_size", _int_range(1, 1_000_000),
     "messages a stream client may lag behind before it is disconnected"),
    ("--retry-ms", "retry_ms", _int_range(0, 3_600_000),
     "reconnection delay suggested to EventSource, in milliseconds"),
    ("--shutdown-timeout", "shutdown_timeout", _seconds,
     "seconds shutdown waits for requests still running"),
    ("--backlog", "backlog", _int_range(1, 1_000_000), "listen backlog for new connections"),
    ("--access-log", "access_log", _flag, "log every request (1/0)"),
    ("--post-rate", "post_rate", _rate, "messages per second a client may post, sustained (0: off)"),
    ("--post-burst", "post_burst", _int_range(1, 1_000_000),
     "messages a client may post at once before --post-rate applies"),
    ("--max-client-connections", "max_client_connections", _int_range(0, 10_000_000),
     "open streams + long-polls per client address (0: off)"),
    ("--max-clients", "max_clients", _int_range(0, 10_000_000),
     "open streams + long-polls in this process (0: off)"),
    ("--trusted-proxies", "trusted_proxies", _networks,
     "comma-separated proxy addresses/networks whose X-Forwarded-For names the client"),
    ("--keepalive-timeout", "keepalive_timeout", _seconds,
     "seconds before an idle connection, or one still sending its headers, is closed"),
    ("--body-timeout", "body_timeout", _seconds, "seconds a request body may take to arrive"),
    ("--stall-timeout", "stall_timeout", _seconds,
     "seconds a stream's socket may accept nothing before the client is dropped"),
    # The publish API (chat/api.py).
    ("--api-keys", "api_keys", _api_keys,
     "comma-separated keys for POST /api/ (Authorization: Bearer KEY); none: /api/ answers 401. "
     "Prefer CHAT_API_KEYS: other users of the machine can see a command line"),
    ("--api-post-rate", "api_post_rate", _rate,
     "messages per second one API key may post, sustained (0: off)"),
    ("--api-post-burst", "api_post_burst", _int_range(1, 1_000_000),
     "messages one API key may post at once before --api-post-rate applies"),
]


MEMORY_WORKERS = ("--workers {} needs a shared store: the memory store keeps each room inside "
                  "one process; add --store redis://host:port/db (or CHAT_STORE)")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_settings(argv: Sequence[str] | None = None,
                   environ: dict[str, str] | None = None) -> tuple[Settings, argparse.Namespace]:
    environ = dict(os.environ if environ is None else environ)
    defaults = Settings()
    parser = _Parser(prog="python -m chat", description=(
        "Chat server: long-poll and Server-Sent Events on aiohttp. Every option can also be set "
        "as CHAT_<OPTION> in the environment (CHAT_PORT=9000); the command line wins."))
    for option, field, convert, text in OPTIONS:
        env = "CHAT_" + field.upper()
        default = getattr(defaults, field)
        if env in environ:
            try:
                default = convert(environ[env])
            except argparse.ArgumentTypeError as exc:
                parser.error(f"{env}: {exc}")
        parser.add_argument(option, dest=field, type=convert, default=default, metavar=field.upper(),
                            help=f"{text} (default: {getattr(defaults, field)}; env {env})")
    parser.add_argument("--log-level", default=environ.get("CHAT_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level")
    parser.add_argument("--no-uvloop", action="store_true",
                        help="use asyncio's own event loop even when uvloop is installed")
    args = parser.parse_args(argv)
    values = {field: getattr(args, field) for _, field, _, _ in OPTIONS}
    settings = dataclasses.replace(defaults, **values)
    if settings.workers > 1 and settings.store == "memory":
        parser.error(MEMORY_WORKERS.format(settings.workers))
    return settings, args


def _event_loop(use_uvloop: bool) -> Any:
    import asyncio

    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


# The collector's default gen-0 threshold (700) runs a collection every few requests once
# thousands of clients are connected, and each collection ages the objects of every waiting
# request into the older generations that full collections then walk. A larger threshold lets
# request garbage die young. Measured on long-poll, 1,000 waiters, 20 messages/s: server CPU per
# delivery about 150 -> 95 us; see README "Performance".
GC_THRESHOLD = (50_000, 20, 20)


async def tune_gc(app: web.Application) -> None:
    """After startup: what startup made lives for good, so no collection has to walk it again."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def main(argv: Sequence[str] | None = None) -> None:
    settings, args = parse_settings(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logs.quiet_client_errors()  # before the workers fork: they inherit it
    if settings.workers > 1:
        from .worker import serve

        log.info("chat starting %d workers on http://%s:%d under gunicorn, store %s",
                 settings.workers, settings.host, settings.port, settings.store.split("@")[-1])
        serve(settings, use_uvloop=not args.no_uvloop)
        return
    loop = _event_loop(not args.no_uvloop)
    log.info("chat %s on http://%s:%d, store %s, event loop %s", "starting", settings.host,
             settings.port, settings.store.split("@")[-1], type(loop).__module__.split(".")[0])
    app = create_app(settings)
    app.on_startup.append(tune_gc)  # the process's own setting, so here and not in create_app
    try:
        web.run_app(
            app, host=settings.host, port=settings.port, loop=loop,
            # Cancel a handler when its client disconnects (the test server does this too): a
            # long-poll whose client left must not keep its waiter until the timeout.
            handler_cancellation=True,
            # on_shutdown ends every stream and poll at once; this only bounds requests still running.
            shutdown_timeout=settings.shutdown_timeout,
            backlog=settings.backlog,
            # Closes idle connections, and ones still dribbling their request headers (slowloris):
            # aiohttp's timer runs from the connection's start until a whole request has arrived.
            keepalive_timeout=settings.keepalive_timeout,
            access_log=logging.getLogger("aiohttp.access") if settings.access_log else None,
            print=lambda text: log.info("%s", " ".join(text.replace("=", "").split())),
        )
    except StoreUnavailable as exc:  # at startup: one line, not a traceback
        log.error("%s", exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
