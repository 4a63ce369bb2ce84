"""GET / and GET /rooms/{room}: the room's newest messages, rendered server-side."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from . import forms, xsrf
from .keys import feed_key, settings_key


async def room_page(request: web.Request) -> web.Response:
    room = request.match_info.get("room", forms.DEFAULT_ROOM)
    if forms.ROOM_RE.fullmatch(room) is None:
        raise web.HTTPNotFound(text="No such room: names are 1 to 64 of A-Z a-z 0-9 _ -")
    settings = request.app[settings_key]
    page = await request.app[feed_key].read(room, None)
    token, new = xsrf.token(request)
    response = aiohttp_jinja2.render_template("room.html", request, {
        "room": room,
        "messages": page.messages,
        # The stream starts right after the newest rendered message: nothing missed, nothing twice.
        "cursor": page.last_id,
        "xsrf": token,
        "path": request.path,
        "max_body": settings.max_body,
        "max_name": settings.max_name,
    })
    response.headers["Cache-Control"] = "no-cache"
    if new:  # none yet, or one this server did not make (a secret since changed): a fresh one
        xsrf.set_cookie(request, response, token)
    return response
