"""The plainest aiohttp long-poll and SSE server: what aiohttp's request machinery costs at least.

    python -m bench run poll -S 1000 --server-cmd "{python} -m bench.floor_aiohttp --port {port}"

One aiohttp application, no middleware, no validation, no XSRF, no limits, no history beyond
a list; the same pre-encoded message bytes as bench/floor.py. Each long-poll is a full aiohttp
request/response cycle that parks on a future, exactly as ``python -m chat``'s does, so the
difference to ``python -m chat`` is our own code and the difference to bench/floor.py is aiohttp.
Not a server to use.
"""

from __future__ import annotations

import asyncio
import gc

from aiohttp import web

from chat.server import GC_THRESHOLD

from .floor import Floor, yardstick_setup

floor_key = web.AppKey("floor_key", Floor)
waiters_key = web.AppKey("waiters_key", dict)


async def new(request: web.Request) -> web.Response:
    form = await request.post()
    room = str(form.get("room", "main"))
    floor = request.app[floor_key]
    data = floor.publish(room, str(form.get("body", "")))
    for fut in request.app[waiters_key].pop(room, ()):
        if not fut.done():
            fut.set_result(None)
    return web.Response(body=data, content_type="application/json")


async def updates(request: web.Request) -> web.Response:
    form = await request.post()
    room = request.app[floor_key].room(str(form.get("room", "main")))
    name = str(form.get("room", "main"))
    cursor = str(form.get("cursor", ""))
    seen = int(cursor.rsplit("-", 1)[1]) if cursor else 0
    while len(room.messages) <= seen:
        fut = asyncio.get_running_loop().create_future()
        request.app[waiters_key].setdefault(name, set()).add(fut)
        try:
            await fut
        finally:
            request.app[waiters_key].get(name, set()).discard(fut)
    newer = room.messages[seen:]
    body = newer[0][2] if len(newer) == 1 else b'{"messages":[%s]}' % b",".join(m[1] for m in newer)
    return web.Response(body=body, content_type="application/json")


async def stream(request: web.Request) -> web.StreamResponse:
    room = request.app[floor_key].room(request.query.get("room", "main"))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"retry: 1000\n: stream open\n\n")
    assert request.transport is not None
    room.streams.add(request.transport)  # Floor.publish writes the chunk-framed frame itself
    try:
        await asyncio.Future()
    finally:
        room.streams.discard(request.transport)
    return response


async def metrics(request: web.Request) -> web.Response:
    rooms = request.app[floor_key].rooms.values()
    waiting = sum(len(w) for w in request.app[waiters_key].values())
    return web.Response(text=f"chat_stream_clients {sum(len(r.streams) for r in rooms)}\n"
                             f"chat_poll_waiters {waiting}\n")


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main(argv: list[str] | None = None) -> None:
    port, loop_factory = yardstick_setup(__doc__, argv)
    app = web.Application()
    app[floor_key] = Floor()
    app[waiters_key] = {}
    app.add_routes([web.post("/a/message/new", new), web.post("/a/message/updates", updates),
                    web.get("/a/message/stream", stream), web.get("/metrics", metrics),
                    web.get("/healthz", ok)])
    gc.freeze()  # the same collector settings as python -m chat
    gc.set_threshold(*GC_THRESHOLD)
    web.run_app(app, host="127.0.0.1", port=port, loop=loop_factory(), access_log=None, print=None,
                handler_cancellation=True, backlog=4096)


if __name__ == "__main__":
    main()
