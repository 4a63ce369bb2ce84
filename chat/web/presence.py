"""GET /a/presence and POST /a/typing: who is in a room, and who is typing in it."""

from __future__ import annotations

from aiohttp import web

from . import forms
from .keys import feed_key, limits_key, settings_key


async def presence(request: web.Request) -> web.Response:
    """``{"count": int, "members": [names, sorted]}``: at most 100 names, the count exact."""
    room = forms.room(request.query.get("room"))
    roster = (await request.app[feed_key].rooms.lookup([room]))[room]
    return web.json_response(roster.as_dict(), headers={"Cache-Control": "no-cache"})


async def typing(request: web.Request) -> web.Response:
    """204 always; at most one notice per client, room and name every --typing-interval is
    relayed (the page sends one every 3 s while its user types), the others are coalesced into
    it. The name is part of the key: people behind one address (an office, a NAT) type at once.
    How many names one client can try is bounded by the request rate."""
    form = await forms.read_form(request)
    room = forms.room(form.get("room"))
    name = forms.name(form.get("name"), request.app[settings_key])
    if name is None:
        raise web.HTTPBadRequest(text="name is required: who is typing?")
    limits = request.app[limits_key]
    client = limits.client(request.remote, request.headers.getall("X-Forwarded-For", ()))
    if not limits.typing.take(f"{client} {room} {name}"):
        await request.app[feed_key].rooms.typing(room, name)
    return web.Response(status=204)
