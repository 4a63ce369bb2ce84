"""Error responses: JSON ``{"error": "..."}`` for everything under /a/ and /api/.

A 413 or a 415 closes the connection: the body it refused is never read (chat.web.replies closes
it as soon as the reply is written). A store that cannot serve is a 503 and one log line.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from ..core import logfmt
from ..stores.base import StoreUnavailable

log = logging.getLogger(__name__)

API_PREFIXES = ("/a/", "/api/")


def _words(request: web.Request, exc: web.HTTPException) -> str:
    """The exception's own text, or a sentence for aiohttp's bare defaults ("404: Not Found")."""
    if exc.text and exc.text != f"{exc.status}: {exc.reason}":
        return exc.text
    if exc.status == 404:
        return f"no such endpoint: {request.path}"
    if exc.status == 405:
        return f"method {request.method} not allowed here; allowed: {exc.headers.get('Allow', '')}"
    return exc.reason.lower()


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    api = request.path.startswith(API_PREFIXES)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not api or exc.status < 400:
            raise
        keep = {k: v for k, v in exc.headers.items()
                if k in ("Allow", "Retry-After", "WWW-Authenticate")}
        response = json_error(exc.status, _words(request, exc), keep)
        # An error that ends the connection (the body could not be read) must say so.
        if exc.keep_alive is False or exc.headers.get("Connection", "").lower() == "close" \
                or exc.status in (413, 415):
            response.force_close()
        return response
    except StoreUnavailable as exc:
        log.warning("%s", logfmt.line(event="store_unavailable", method=request.method,
                                      path=request.path, error=exc))
        if api:
            return json_error(503, "the message store is unavailable; try again shortly",
                              {"Retry-After": "1"})
        return web.Response(status=503, text="The message store is unavailable; try again shortly.")
    except Exception:
        if not api:
            raise
        log.exception("error handling %s %s", request.method, request.path)
        return json_error(500, "internal server error")
