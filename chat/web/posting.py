"""POST /a/message/new: validate, store, then the message as JSON or a redirect to ``next``."""

from __future__ import annotations

from aiohttp import web

from . import forms
from .keys import feed_key, settings_key


async def new_message(request: web.Request) -> web.Response:
    settings = request.app[settings_key]
    form = await forms.read_form(request)
    room = forms.room(form.get("room"))
    body = forms.body(form.get("body"), settings)
    name = forms.name(form.get("name"), settings)
    next_path = forms.next_path(form.get("next"))  # checked before anything is stored
    posted = await request.app[feed_key].publish(room, body, name)
    if next_path is not None:
        raise web.HTTPFound(next_path)
    return web.Response(body=posted.message.data, content_type="application/json")
