"""The operational endpoints: GET /healthz and GET /metrics."""

from __future__ import annotations

from aiohttp import web

from .keys import feed_key, limits_key, metrics_key


async def healthz(request: web.Request) -> web.Response:
    """200 when the store accepts writes now (Redis: a write to one key), else 503."""
    if await request.app[feed_key].store.healthy():
        return web.Response(text="ok")
    return web.Response(status=503, text="store unavailable")


async def metrics(request: web.Request) -> web.Response:
    # Memory, file descriptors and limits are for the operator (--metrics-allow), not the world.
    if not request.app[limits_key].may_read_metrics(request):
        raise web.HTTPForbidden(text="/metrics is not served to this address (--metrics-allow)")
    body, content_type = request.app[metrics_key].render()
    return web.Response(body=body, headers={"Content-Type": content_type})
