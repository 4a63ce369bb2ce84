"""POST /a/message/updates: Tornado chatdemo's long-poll, with an explicit reset for bad cursors."""

from __future__ import annotations

import asyncio

from aiohttp import web

from . import forms
from .keys import settings_key, store_key
from .message import poll_body

_TIMEOUT_BODY = b"{}"  # no "messages" key: the classic client treats an empty list as an error


async def updates(request: web.Request) -> web.Response:
    form = await forms.read_form(request)
    room = forms.room(form.get("room"))
    cursor = forms.cursor(form.get("cursor"))
    app = request.app
    store = app[store_key]
    hub = store.hub
    loop = hub.loop
    deadline = loop.time() + app[settings_key].poll_timeout
    while not hub.closed:
        # Wait first, then look: a message stored while we look still wakes us, and the room
        # is watched while we look (the Redis store reads only rooms someone here watches).
        woken = hub.wait(room)
        try:
            since = await store.since(room, cursor)
            if since.messages:
                hub.count(len(since.messages))
                return _json(poll_body(since.messages, since.reset is not None))
            timer = loop.call_at(deadline, _expire, woken)  # one timer, not asyncio.timeout()
            try:
                await woken
            finally:
                timer.cancel()
        finally:
            timed_out = hub.unwait(room, woken)  # still registered: no message, the timer woke us
        if timed_out:
            break
    return _json(_TIMEOUT_BODY)


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")
