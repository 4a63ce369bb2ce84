"""POST /a/message/updates: Tornado chatdemo's long-poll, with an explicit reset for bad cursors."""

from __future__ import annotations

from aiohttp import web

from ..core.message import poll_body
from . import forms
from .keys import feed_key, settings_key

_TIMEOUT_BODY = b"{}"  # no "messages" key: the classic client treats an empty list as an error


async def updates(request: web.Request) -> web.Response:
    form = await forms.read_form(request)
    room = forms.room(form.get("room"))
    cursor = forms.cursor(form.get("cursor"))
    settings = request.app[settings_key]
    name = forms.name(form.get("name"), settings)  # who is here, for presence
    replay = await request.app[feed_key].poll(room, cursor, settings.poll_timeout, name)
    if replay is None:
        return _json(_TIMEOUT_BODY)
    return _json(poll_body(replay.messages, replay.reset is not None))


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")
