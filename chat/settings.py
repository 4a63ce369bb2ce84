"""Every tunable of the server, with the wire contract's defaults, in one frozen dataclass."""

from __future__ import annotations

import dataclasses
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8888
    # Messages kept per room (the buffer a cursor can resume from).
    history: int = 200
    # Message body length in characters, after trimming whitespace.
    max_body: int = 4096
    max_name: int = 64
    # Whole request body in bytes (form posts); larger gets 413.
    max_request: int = 64 * 1024
    poll_timeout: float = 30.0
    ping_interval: float = 15.0
    # Messages a stream client may have waiting before it is disconnected.
    queue_size: int = 1000
    # Reconnection delay the SSE stream suggests to EventSource, in milliseconds.
    retry_ms: int = 1000
    # How long shutdown waits for handlers that our own on_shutdown did not end.
    shutdown_timeout: float = 1.0
    # listen(2) backlog: thousands of clients reconnecting at once must not be refused.
    backlog: int = 4096
    access_log: bool = False
    # ---- abuse limits; 0 turns one off ----
    # Posts per second per client (sustained) and how many it may make at once (token bucket).
    post_rate: float = 5.0
    post_burst: int = 20
    # Open streams + long-polls per client, and in this whole process.
    max_client_connections: int = 20
    max_clients: int = 10_000
    # Proxies whose X-Forwarded-For names the client (addresses or networks); others are ignored.
    trusted_proxies: tuple[str, ...] = ()
    # ---- time limits ----
    # An idle keep-alive connection, or one still sending its request headers, is closed after this.
    keepalive_timeout: float = 15.0
    # A request body must arrive within this (else 408).
    body_timeout: float = 10.0
    # A stream whose socket accepts nothing for this long is dropped (TCP_USER_TIMEOUT, and the
    # write buffer staying full). With the heartbeat, a half-open client is noticed within
    # ping_interval + stall_timeout: two heartbeat intervals with the defaults.
    stall_timeout: float = 15.0
    # ---- the publish API (/api/, chat/api.py) ----
    # Keys accepted as "Authorization: Bearer <key>"; none: every /api/ request is 401. Left out
    # of repr() so that no log line or error that shows the settings can show a key.
    api_keys: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    # Posts per second per API key (sustained) and at once: programs post faster than people.
    api_post_rate: float = 100.0
    api_post_burst: int = 200
    # "memory" or a redis:// URL.
    store: str = "memory"
    # Processes serving the port (under gunicorn); more than one needs a shared store (Redis).
    workers: int = 1
    # Seconds a Redis command may take; a request that would wait longer is answered 503.
    redis_timeout: float = 2.0
    # Longest pause between attempts to reach Redis again after losing it.
    redis_backoff: float = 2.0
    # Redis connections per process for requests (the reader has one more of its own).
    redis_connections: int = 50
    templates_dir: Path = ROOT / "templates"
    static_dir: Path = ROOT / "static"
