"""Every reply: the page headers, then written here, within a deadline, before the handler's
connection slot is given back.

aiohttp writes a handler's response after the handler (and every middleware) has returned. A
20 MB answer to a client that never reads then sits in the transport's buffer for as long as the
connection lives, and the per-client slot that should have bounded such clients is already free.
So the outermost middleware writes the response itself:

- The write has a deadline: a client that accepts nothing for ``--stall-timeout`` (bytes wait
  for it, in our buffer or the kernel's, and it acknowledges none) is disconnected, which frees
  the buffer. A slow reader that makes progress is not: the clock restarts with each advance.
- The slot (``slot_key``) is released once the reply is written, or the client is gone.
- A reply that ends the connection (a 413, a 415: the rest of the body is unread) closes it
  within a second (``discard_then_close``), instead of aiohttp reading, and inflating, the rest
  of the body for up to ten seconds.

aiohttp then finds the response prepared and finished, and only logs it.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from ..core import logfmt, tcpinfo
from .keys import limits_key, settings_key, slot_key
from .limits import Limits

log = logging.getLogger("chat.limits")

# Pages render user text; even though it is escaped, the policy forbids inline script and any
# foreign origin, so a missed escape still cannot run script (defence in depth).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
SERVER = "chat"  # not aiohttp's "Python/3.11 aiohttp/3.14.5": no versions for a scanner to match


class Watch:
    """Aborts a transport whose peer accepts nothing for ``stall`` seconds while data waits.

    Costs one timer per reply; the kernel is only asked (an ioctl) once a write has been
    pending for a quarter of ``stall``, which a client that reads never makes it do. The drop is
    counted and logged here, at once: the abort cancels the handler (handler_cancellation)."""

    __slots__ = ("request", "transport", "limits", "stall", "mark", "since", "handle")

    def __init__(self, request: web.BaseRequest, transport: asyncio.Transport, limits: Limits,
                 stall: float) -> None:
        self.request = request
        self.transport = transport
        self.limits = limits
        self.stall = stall
        self.mark: tuple[int, int, int] | None = None
        self.since = 0.0
        self.handle = limits.loop.call_later(stall / 4, self._check)

    def _progress(self) -> tuple[int, int, int]:
        waiting, acked = tcpinfo.progress(self.transport.get_extra_info("socket"))
        return self.transport.get_write_buffer_size(), waiting, acked

    def _check(self) -> None:
        now, progress = self.limits.loop.time(), self._progress()
        if progress != self.mark or not (progress[0] or progress[1]):
            self.mark, self.since = progress, now
        elif now - self.since >= self.stall:
            self._drop(progress[0] + progress[1])
            return
        self.handle = self.limits.loop.call_later(self.stall / 4, self._check)

    def _drop(self, waiting: int) -> None:
        self.limits.stalled_replies += 1
        peer = self.transport.get_extra_info("peername")
        log.warning("%s", logfmt.line(event="dropped", reason="stalled", what="reply",
                                      client=peer[0] if peer else "unknown",
                                      method=self.request.method, path=self.request.path,
                                      waiting=waiting))
        sock = self.transport.get_extra_info("socket")
        tcpinfo.reset_on_close(sock)  # so the kernel drops what it holds for this client too
        self.transport.abort()  # drops what we buffered; the pending write raises

    def cancel(self) -> None:
        self.handle.cancel()


async def write(request: web.BaseRequest, response: web.StreamResponse, limits: Limits,
                stall: float) -> None:
    """Send ``response`` (its headers, what remains of its body, its end) within the deadline."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return  # the client has gone; aiohttp notices and logs it
    watch = Watch(request, transport, limits, stall)
    limits.writing.add(transport)
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:
        return  # the client left, or we cut it off: aiohttp finds the transport closed
    finally:
        watch.cancel()
        limits.writing.discard(transport)
    if not response.keep_alive and not request.content.is_eof():
        await discard_then_close(request)


async def discard_then_close(request: web.BaseRequest, max_bytes: int = 256 * 1024,
                             seconds: float = 1.0) -> None:
    """End a connection whose request body was refused unread (413, 415, 408).

    aiohttp would read and discard the rest of the body for up to ten seconds, inflating it if
    it is compressed (a megabyte of gzip is a gigabyte). Closing at once with unread bytes in
    the socket makes the kernel send a reset, which can destroy the reply before the client
    reads it. So, as Go's net/http does: read on for at most ``max_bytes`` or ``seconds``,
    whichever comes first (python -m chat never inflates: its runner has auto_decompress off),
    then close.
    """
    content = request.content
    try:
        async with asyncio.timeout(seconds):
            left = max_bytes
            while left > 0 and not content.is_eof():
                chunk = await content.readany()
                if not chunk:
                    break
                left -= len(chunk)
    except (TimeoutError, OSError, HttpProcessingError, web.RequestPayloadError):
        pass
    request.protocol.force_close()


def _headers(response: web.StreamResponse) -> None:
    if not response.prepared:
        for key, value in PAGE_HEADERS.items():
            response.headers.setdefault(key, value)


@web.middleware
async def deliver(request: web.Request, handler: Handler) -> web.StreamResponse:
    limits = request.app[limits_key]
    stall = request.app[settings_key].stall_timeout
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # aiohttp would write it; we do, within the deadline
            _headers(exc)
            await write(request, exc, limits, stall)
            raise
        _headers(response)
        # A static file is ours and small (chat.js, chat.css); aiohttp sends it with sendfile
        # from prepare(), which it must call only once.
        if not isinstance(response, web.FileResponse):
            await write(request, response, limits, stall)
        return response
    finally:
        slot = request.get(slot_key)
        if slot is not None:
            limits.release(*slot)


async def name_server(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every response of the application says ``Server: chat``."""
    response.headers["Server"] = SERVER
