"""GET /a/message/stream: Server-Sent Events, resumable from ``Last-Event-ID``.

Framing is ours (``chat.core.message``) rather than aiohttp-sse's: the contract wants ``\\n``
line ends, a ``retry:`` line first, and message frames that are encoded once per message and
written by the hub straight to each caught-up client's socket. What is replayed and when the
client goes live is the feed's business (``chat.feed.Stream``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from aiohttp import web

from . import forms
from .keys import feed_key, settings_key

HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    # nginx (and others honouring it) must pass each event through at once, not buffer the body.
    "X-Accel-Buffering": "no",
}


def opening(retry_ms: int) -> bytes:
    """First bytes: the reconnection delay, and a comment so headers and data leave at once."""
    return b"retry: %d\n: stream open\n\n" % retry_ms


def limit_unacknowledged(transport: asyncio.BaseTransport, seconds: float) -> None:
    """Have the kernel drop the connection once sent data goes unacknowledged for ``seconds``.

    The hub's sweep notices such clients first (and counts and logs them as stalled); this is
    the backstop for when the event loop itself is too busy to look.
    """
    sock = transport.get_extra_info("socket")
    option = getattr(socket, "TCP_USER_TIMEOUT", None)  # Linux only
    if sock is not None and option is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, option, int(seconds * 1000))


def resume_point(request: web.Request) -> str | None:
    """The ``Last-Event-ID`` header, else the ``last_event_id`` query parameter; the header wins."""
    return request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or None


async def stream(request: web.Request) -> web.StreamResponse:
    room = forms.room(request.query.get("room"))
    settings = request.app[settings_key]
    name = forms.name(request.query.get("name"), settings)  # who is here, for presence
    transport = request.transport
    if transport is None:  # the client left before we could start
        return web.Response()
    limit_unacknowledged(transport, 2 * settings.stall_timeout)
    client = request.app[feed_key].subscribe(room, transport, request.protocol,
                                             chunked=request.version >= (1, 1), name=name)
    try:
        # The first page of the replay is read before any header is sent: a store that cannot
        # be reached is still a 503.
        first = await client.begin(resume_point(request))
        response = web.StreamResponse(headers=HEADERS)
        await response.prepare(request)
        # The opening (with the headers) goes through aiohttp's writer; after it, the hub writes
        # frames to the transport itself, chunked exactly as aiohttp would.
        await response.write(opening(settings.retry_ms) + first)
        # Returns once the hub closes us (shutdown, or a drop, which also aborts the connection).
        await client.run(request.writer.drain)
    finally:
        client.close()
    return response
