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
    store = request.app[store_key]
    hub = store.hub
    try:
        async with asyncio.timeout(request.app[settings_key].poll_timeout):
            while not hub.closed:
                # Wait first, then look: a message stored while we look still wakes us.
                woken = hub.wait(room)
                try:
                    since = await store.since(room, cursor)
                    if since.messages:
                        hub.count(len(since.messages))
                        return _json(poll_body(since.messages, since.reset is not None))
                    await woken
                finally:
                    hub.unwait(room, woken)
    except TimeoutError:
        pass
    return _json(_TIMEOUT_BODY)


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")
