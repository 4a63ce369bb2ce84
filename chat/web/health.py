"""The operational endpoints: GET /healthz and GET /metrics."""

from __future__ import annotations

from aiohttp import web

from .keys import feed_key, metrics_key


async def healthz(request: web.Request) -> web.Response:
    if await request.app[feed_key].store.healthy():
        return web.Response(text="ok")
    return web.Response(status=503, text="store unavailable")


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[metrics_key].render()
    return web.Response(body=body, headers={"Content-Type": content_type})
