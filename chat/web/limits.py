"""Abuse limits: posts per client (token bucket), open streams + polls per client and per process.

A client is its peer address, or, when the peer is a trusted proxy, the nearest address in
X-Forwarded-For that is not itself a trusted proxy. Trusting the header from anyone else would
let every request pick its own identity and walk around every limit.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from ..settings import Settings
from .keys import limits_key

log = logging.getLogger("chat.limits")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TokenBuckets:
    """A token bucket per client: ``burst`` posts at once, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when)
        self._prune_at = 1024

    def take(self, client: str) -> float:
        """0 if the client may post now, else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        tokens, then = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens < 1:
            self._buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate
        self._buckets[client] = (tokens - 1, now)
        if len(self._buckets) >= self._prune_at:
            self._prune(now)
        return 0.0

    def _prune(self, now: float) -> None:
        """Forget clients whose bucket has refilled: they are as if never seen."""
        full = [c for c, (tokens, then) in self._buckets.items()
                if tokens + (now - then) * self.rate >= self.burst]
        for c in full:
            del self._buckets[c]
        self._prune_at = max(1024, 2 * len(self._buckets))


class Limits:
    """The counters behind every limit; no I/O, and a clock that tests may replace."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.posts = TokenBuckets(settings.post_rate, settings.post_burst, clock)
        # Posts to /api/, per API key: programs post faster than people, so they have their own.
        self.api_posts = TokenBuckets(settings.api_post_rate, settings.api_post_burst, clock)
        # Typing notices relayed per client and room: one every --typing-interval.
        self.typing = TokenBuckets(1 / settings.typing_interval if settings.typing_interval else 0,
                                   1, clock)
        self.per_client = settings.max_client_connections
        self.total = settings.max_clients
        self.proxies: list[_Network] = [ipaddress.ip_network(p, strict=False)
                                        for p in settings.trusted_proxies]
        self._open: dict[str, int] = {}
        self.open_total = 0
        self.refused: Counter[str] = Counter()
        # Connections (aiohttp protocols) that have sent a request; closed ones are forgotten
        # whenever the set doubles, so it stays within twice the open ones.
        self._connections: set[Any] = set()
        self._forget_at = 1024

    def seen(self, protocol: Any) -> None:
        connections = self._connections
        if protocol not in connections:
            connections.add(protocol)
            if len(connections) >= self._forget_at:
                self._forget_closed()

    def _forget_closed(self) -> None:
        self._connections = {p for p in self._connections if p.transport is not None}
        self._forget_at = max(1024, 2 * len(self._connections))

    def open_connections(self) -> int:
        self._forget_closed()
        return len(self._connections)

    # ---- who is asking ----
    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in net for net in self.proxies)

    def client(self, peer: str | None, forwarded_for: str | None) -> str:
        peer = peer or "unknown"
        if not forwarded_for or not self._trusted(peer):
            return peer
        for hop in reversed(forwarded_for.split(",")):
            hop = hop.strip()
            if not self._trusted(hop):
                return hop or peer
        return peer

    # ---- posts: token bucket ----
    def take_post(self, client: str) -> float:
        """0 if the client may post now, else the seconds until it may."""
        return self.posts.take(client)

    # ---- streams and polls: concurrency ----
    def acquire(self, client: str) -> str | None:
        """Take a connection slot; the reason when there is none."""
        if self.total and self.open_total >= self.total:
            return "process_clients"
        held = self._open.get(client, 0)
        if self.per_client and held >= self.per_client:
            return "client_connections"
        self._open[client] = held + 1
        self.open_total += 1
        return None

    def release(self, client: str) -> None:
        held = self._open[client] - 1
        if held:
            self._open[client] = held
        else:
            del self._open[client]
        self.open_total -= 1


def refuse(request: web.Request, client: str, reason: str, status: int,
           retry_after: float, limits: Limits) -> web.HTTPException:
    limits.refused[reason] += 1
    wait = max(1, math.ceil(retry_after))
    log.warning("event=refused reason=%s client=%s method=%s path=%s status=%d retry_after=%d",
                reason, client, request.method, request.path, status, wait)
    words = {
        "posts": f"too many messages; wait {wait} s",
        "api_posts": f"too many messages for this API key; wait {wait} s",
        "client_connections": f"too many open streams and polls from your address "
                              f"(at most {limits.per_client})",
        "process_clients": "the server is full; try again shortly",
    }[reason]
    cls = web.HTTPServiceUnavailable if status == 503 else web.HTTPTooManyRequests
    return cls(text=words, headers={"Retry-After": str(wait)})


_CONNECTION_ROUTES = frozenset({"message_stream", "message_updates"})


@web.middleware
async def apply_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
    limits = request.app[limits_key]
    limits.seen(request.protocol)
    route = request.match_info.route.name
    if route != "message_new" and route not in _CONNECTION_ROUTES:
        return await handler(request)
    client = limits.client(request.remote, request.headers.get("X-Forwarded-For"))
    if route == "message_new":
        wait = limits.take_post(client)
        if wait:
            raise refuse(request, client, "posts", 429, wait, limits)
        return await handler(request)
    reason = limits.acquire(client)
    if reason is not None:  # refused before any text/event-stream header is sent
        status = 503 if reason == "process_clients" else 429
        raise refuse(request, client, reason, status, 1, limits)
    try:
        return await handler(request)
    finally:
        limits.release(client)
