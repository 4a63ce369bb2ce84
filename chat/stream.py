"""GET /a/message/stream: Server-Sent Events, resumable from ``Last-Event-ID``.

Framing is ours (a few byte templates) rather than aiohttp-sse's: the contract wants ``\\n``
line ends, a ``retry:`` line first, and message frames that are encoded once per message and
written by the hub straight to each caught-up client's socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

from aiohttp import web

from . import forms
from .buffer import Since
from .ids import EARLIEST, Cursor, parse_cursor
from .keys import settings_key, store_key
from .message import Message

HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    # nginx (and others honouring it) must pass each event through at once, not buffer the body.
    "X-Accel-Buffering": "no",
}


def opening(retry_ms: int) -> bytes:
    """First bytes: the reconnection delay, and a comment so headers and data leave at once."""
    return b"retry: %d\n: stream open\n\n" % retry_ms


def reset_frame(since: Since) -> bytes:
    """Tells the client its cursor was not trusted; its ``id:`` is a valid cursor of the new history.

    ``since.reset`` is one of our own words ("epoch", "evicted", "unknown", "malformed"), never
    client input, and ``base`` is one of our ids: nothing here can inject an SSE field.
    """
    data = json.dumps({"reason": since.reset}).encode()
    return b"id: %s\nevent: reset\ndata: %s\n\n" % (since.base.encode(), data)


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
    cursor = resume_point(request)
    settings = request.app[settings_key]
    store = request.app[store_key]
    hub = store.hub

    transport = request.transport
    if transport is None:  # the client left before we could start
        return web.Response()
    limit_unacknowledged(transport, 2 * settings.stall_timeout)
    # Subscribe before reading the history: whatever is published meanwhile waits in the queue.
    sub = hub.subscribe(room, transport, request.protocol, chunked=request.version >= (1, 1))
    try:
        # Ask the store before sending any header: if it is unreachable, the client gets a 503.
        frames = [opening(settings.retry_ms)]
        after: Message | Cursor | None
        if cursor is None:
            # Live only: queued messages up to the newest one now are not for this client.
            after = parse_cursor(await store.latest(room))
        else:
            since = await store.since(room, None if cursor == EARLIEST else cursor)
            if since.reset is not None:
                frames.append(reset_frame(since))
            frames.extend(m.sse for m in since.messages)
            hub.count(len(since.messages))
            # Queued messages up to the last one replayed, or to the cursor the client already
            # has, are not sent again (with Redis another process's reader may be ahead of ours).
            after = since.messages[-1] if since.messages else parse_cursor(since.base)
        response = web.StreamResponse(headers=HEADERS)
        await response.prepare(request)
        # The opening (with the headers) goes through aiohttp's writer; after it, the hub writes
        # frames to the transport itself, chunked exactly as aiohttp would.
        await response.write(b"".join(frames))
        # Returns once the hub closes us (shutdown, or a drop, which also aborts the connection).
        await sub.pump(request.writer.drain, after, hub.count)
    finally:
        hub.unsubscribe(sub)
    return response
