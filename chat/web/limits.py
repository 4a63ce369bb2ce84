"""Abuse limits: who a client is, and how much of the server it may take.

- Posts per client (token bucket); page, stream and long-poll requests per client (a generous
  token bucket); open streams + long-polls per client and per process; open connections per
  address; bytes of replies waiting in socket buffers, process-wide.
- A request ``Content-Encoding`` is refused (415) before its body is read: a megabyte of gzip
  inflates to a gigabyte, and aiohttp would inflate it even to throw it away.

A client is its peer address, or, when the peer is a trusted proxy, the nearest address in
X-Forwarded-For (every header line of it, read from the right) that is not itself a trusted
proxy. Trusting the header from anyone else, or the part of it a client wrote itself, would let
every request pick its own identity and walk around every limit. An IPv6 client is its /64: one
subscriber gets a whole /64, so its 2^64 addresses must count as one.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from ..core import logfmt
from ..settings import Settings
from .keys import feed_key, limits_key, slot_key
from .xsrf import issued_cookie

log = logging.getLogger("chat.limits")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


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


def parse_ip(text: str) -> _Address | None:
    """An address as written in a header or by the socket layer; None if it is not one. An
    IPv4-mapped IPv6 address is the IPv4 address it maps."""
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def key_of(ip: _Address) -> str:
    """The name limits count a client by: the IPv4 address, or the IPv6 address's /64."""
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


@functools.lru_cache(maxsize=4096)
def _peer(peer: str) -> tuple[_Address | None, str]:
    """A peer address (as aiohttp gives it) parsed and keyed, once per distinct peer."""
    ip = parse_ip(peer)
    return ip, key_of(ip) if ip is not None else peer


class Limits:
    """The counters behind every limit; no I/O, and a clock that tests may replace."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.posts = TokenBuckets(settings.post_rate, settings.post_burst, clock)
        # Posts to /api/, per API key: programs post faster than people, so they have their own.
        self.api_posts = TokenBuckets(settings.api_post_rate, settings.api_post_burst, clock)
        # Typing notices relayed per client, room and name: one every --typing-interval.
        self.typing = TokenBuckets(1 / settings.typing_interval if settings.typing_interval else 0,
                                   1, clock)
        # Pages, streams and polls: a reconnecting client asks again and again; a flood of them
        # (2,700 page views a second from one client) is not a person.
        self.requests = TokenBuckets(settings.request_rate, settings.request_burst, clock)
        self.per_client = settings.max_client_connections  # per browser (else per address)
        self.per_address_streams = settings.max_address_streams
        self.total = settings.max_clients
        self.per_address = settings.max_address_connections
        self.max_pending = settings.max_pending_bytes
        self.proxies: list[_Network] = [ipaddress.ip_network(p, strict=False)
                                        for p in settings.trusted_proxies]
        self.metrics_allow: list[_Network] = [ipaddress.ip_network(p, strict=False)
                                              for p in settings.metrics_allow]
        self._open: dict[str, int] = {}  # open streams + polls per browser (or address)
        self._open_address: dict[str, int] = {}  # and per address
        self.open_total = 0
        self.refused: Counter[str] = Counter()
        # Connections (aiohttp protocols) that have sent a request, by client address; closed
        # ones are forgotten whenever their number doubles, so it stays within twice the open
        # ones, and in one address's set when it reaches the cap.
        self._connections: dict[str, set[Any]] = {}
        self._seen = 0
        self._forget_at = 1024
        # Transports with a reply being written now (chat.web.replies): what they hold unsent
        # counts towards --max-pending-bytes, as do the streams' buffers (Hub.buffered).
        self.writing: set[asyncio.WriteTransport] = set()
        self.stalled_replies = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, looked up once (on Python 3.11 each lookup is a getpid() call)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # ---- connections per address ----
    def connected(self, protocol: Any, peer: str | None) -> bool:
        """Count a connection at its first request; False when its address is over the cap
        (a trusted proxy carries many clients: it has no cap)."""
        ip, key = _peer(peer or "unknown")
        group = self._connections.get(key)
        if group is None:
            group = self._connections[key] = set()
        elif protocol in group:
            return True
        if self.per_address and len(group) >= self.per_address and not self._trusted(ip):
            group.difference_update([p for p in group if p.transport is None])
            if len(group) >= self.per_address:
                return False
        group.add(protocol)
        self._seen += 1
        if self._seen >= self._forget_at:
            self._forget_closed()
        return True

    def _forget_closed(self) -> None:
        kept: dict[str, set[Any]] = {}
        for key, group in self._connections.items():
            alive = {p for p in group if p.transport is not None}
            if alive:
                kept[key] = alive
        self._connections = kept
        self._seen = sum(map(len, kept.values()))
        self._forget_at = max(1024, 2 * self._seen)

    def open_connections(self) -> int:
        self._forget_closed()
        return self._seen

    # ---- who is asking ----
    def _trusted(self, ip: _Address | None) -> bool:
        return ip is not None and any(ip in net for net in self.proxies)

    def address(self, peer: str | None, forwarded_for: Sequence[str] = ()) -> _Address | None:
        """The client's address (None if the peer has none, e.g. a Unix socket)."""
        ip = _peer(peer or "unknown")[0]
        if not forwarded_for or not self._trusted(ip):
            return ip
        hops = [parse_ip(hop) for line in forwarded_for for hop in line.split(",")]
        if None in hops:  # not a list of addresses: nothing in it can be trusted
            return ip
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop
        return ip

    def client(self, peer: str | None, forwarded_for: Sequence[str] = ()) -> str:
        """The name the limits count the client by (an address, an IPv6 /64, or the peer)."""
        if not forwarded_for:
            return _peer(peer or "unknown")[1]
        ip = self.address(peer, forwarded_for)
        return key_of(ip) if ip is not None else peer or "unknown"

    def from_proxy(self, request: web.BaseRequest) -> bool:
        """Is the peer a trusted proxy (whose X-Forwarded-* headers are believed)?"""
        return self._trusted(_peer(request.remote or "unknown")[0])

    def https(self, request: web.BaseRequest) -> bool:
        """Did the client connect over TLS? Ours, or a trusted proxy's ``X-Forwarded-Proto``
        (the value the nearest proxy added: the last one)."""
        if request.transport is not None and request.transport.get_extra_info("sslcontext"):
            return True
        proto: list[str] = request.headers.getall("X-Forwarded-Proto", [])
        return bool(proto) and self.from_proxy(request) and \
            proto[-1].rsplit(",", 1)[-1].strip().lower() == "https"

    def may_read_metrics(self, request: web.BaseRequest) -> bool:
        ip = self.address(request.remote, request.headers.getall("X-Forwarded-For", ()))
        return ip is not None and any(ip in net for net in self.metrics_allow)

    # ---- posts: token bucket ----
    def take_post(self, client: str) -> float:
        """0 if the client may post now, else the seconds until it may."""
        return self.posts.take(client)

    # ---- streams and polls: concurrency ----
    def acquire(self, client: str, browser: str | None = None) -> str | None:
        """Take a stream-or-poll slot for ``client`` (an address) and its ``browser`` (the
        page's signed cookie; None: the address is the browser); the reason when there is none.

        A browser may hold --max-client-connections; an address, however many browsers are
        behind it (an office behind one NAT), --max-address-streams.
        """
        if self.total and self.open_total >= self.total:
            return "process_clients"
        who = client if browser is None else "b " + browser
        held, at_address = self._open.get(who, 0), self._open_address.get(client, 0)
        if self.per_client and held >= self.per_client:
            return "client_connections"
        if self.per_address_streams and at_address >= self.per_address_streams:
            return "address_streams"
        self._open[who] = held + 1
        self._open_address[client] = at_address + 1
        self.open_total += 1
        return None

    def release(self, client: str, browser: str | None = None) -> None:
        who = client if browser is None else "b " + browser
        for counts, key in ((self._open, who), (self._open_address, client)):
            held = counts[key] - 1
            if held:
                counts[key] = held
            else:
                del counts[key]
        self.open_total -= 1

    # ---- bytes waiting in socket buffers ----
    def pending_bytes(self, streams: int) -> int:
        """Bytes of replies this process holds unsent: ``streams`` (the hub's last count) and
        what each reply being written still holds."""
        total: int = streams + sum(t.get_write_buffer_size() for t in self.writing)
        return total


WORDS = {
    "posts": "too many messages; wait {wait} s",
    "api_posts": "too many messages for this API key; wait {wait} s",
    "requests": "too many requests; wait {wait} s",
    "client_connections": "too many open streams and polls from this browser (at most {n})",
    "address_streams": "too many open streams and polls from your address (at most {n})",
    "process_clients": "the server is full; try again shortly",
    "pending_bytes": "the server is busy sending; try again shortly",
    "address_connections": "too many open connections from your address (at most {n})",
}


def refuse(request: web.Request, client: str, reason: str, status: int,
           retry_after: float, limits: Limits) -> web.HTTPException:
    limits.refused[reason] += 1
    wait = max(1, math.ceil(retry_after))
    log.warning("%s", logfmt.line(event="refused", reason=reason, client=client,
                                  method=request.method, path=request.path, status=status,
                                  retry_after=wait))
    n = {"address_connections": limits.per_address,
         "address_streams": limits.per_address_streams}.get(reason, limits.per_client)
    words = WORDS[reason].format(wait=wait, n=n)
    cls = web.HTTPServiceUnavailable if status == 503 else web.HTTPTooManyRequests
    return cls(text=words, headers={"Retry-After": str(wait)})


# Requests a person's page makes again and again, each under the per-client request rate.
_RATED_ROUTES = frozenset({"index", "room", "open_room", "message_stream", "message_updates",
                           "message_history", "presence", "typing", "rooms"})
_CONNECTION_ROUTES = frozenset({"message_stream", "message_updates"})


@web.middleware
async def apply_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
    limits = request.app[limits_key]
    if not limits.connected(request.protocol, request.remote):
        error = refuse(request, _peer(request.remote or "unknown")[1], "address_connections",
                       429, 1, limits)
        error.force_close()
        raise error
    coding = request.headers.get(hdrs.CONTENT_ENCODING)
    if coding is not None and coding.strip().lower() not in ("", "identity") and \
            request.match_info.http_exception is None:  # no route: its 404 or 405 says more
        # Refused before a byte of the body is read; the connection closes with the reply, so
        # nothing reads (and inflates) the rest of it either.
        error = web.HTTPUnsupportedMediaType(
            text=f"Content-Encoding {coding[:40]!r} is not accepted: send the body as it is")
        error.force_close()
        raise error
    route = request.match_info.route.name
    if route != "message_new" and route not in _RATED_ROUTES:
        return await handler(request)
    client = limits.client(request.remote, request.headers.getall("X-Forwarded-For", ()))
    if route == "message_new":
        wait = limits.take_post(client)
        if wait:
            raise refuse(request, client, "posts", 429, wait, limits)
        return await handler(request)
    wait = limits.requests.take(client)
    if wait:
        raise refuse(request, client, "requests", 429, wait, limits)
    if route not in _CONNECTION_ROUTES:
        return await handler(request)
    if limits.max_pending and \
            limits.pending_bytes(request.app[feed_key].hub.buffered) > limits.max_pending:
        raise refuse(request, client, "pending_bytes", 503, 1, limits)
    # The browser is its page's signed _xsrf cookie: one this server made (a client cannot pick
    # an identity), so tabs of one browser count together and browsers behind one address
    # count apart. Without one (a program), the address is the browser.
    browser = issued_cookie(request)
    reason = limits.acquire(client, browser)
    if reason is not None:  # refused before any text/event-stream header is sent
        status = 503 if reason == "process_clients" else 429
        raise refuse(request, client, reason, status, 1, limits)
    # Held until the reply is written, not just until the handler returns: a reply that its
    # client does not read still takes memory (released by chat.web.replies).
    request[slot_key] = (client, browser)
    return await handler(request)
