"""GET / and GET /rooms/{room}: the room's newest messages, rendered server-side; on ``/`` also
the active rooms. GET /rooms?room=NAME: the no-script way to a room."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from ..feed import ActiveRoom
from . import forms, xsrf
from .keys import feed_key, settings_key
from .rooms import LISTED

ROOM_RULE = "Room names are 1 to 64 of A-Z a-z 0-9 _ -"


async def room_page(request: web.Request) -> web.Response:
    room = request.match_info.get("room", forms.DEFAULT_ROOM)
    if forms.ROOM_RE.fullmatch(room) is None:
        raise web.HTTPNotFound(text="No such room: names are 1 to 64 of A-Z a-z 0-9 _ -")
    settings = request.app[settings_key]
    feed = request.app[feed_key]
    page, more = await feed.older(room, None, settings.history)
    index = request.match_info.route.name == "index"
    token, new = xsrf.token(request)
    response = aiohttp_jinja2.render_template("room.html", request, {
        "room": room,
        "messages": page.messages,
        # The stream starts right after the newest rendered message: nothing missed, nothing twice.
        "cursor": page.last_id,
        # Whether older messages are kept: the page offers to load them (scroll-back).
        "more": more and bool(page.messages),
        "rooms": _listed(await feed.active_rooms(LISTED)) if index else None,
        "xsrf": token,
        "path": request.path,
        "max_body": settings.max_body,
        "max_name": settings.max_name,
    })
    response.headers["Cache-Control"] = "no-cache"
    if new:  # none yet, or one this server did not make (a secret since changed): a fresh one
        xsrf.set_cookie(request, response, token)
    return response


def _listed(active: list[ActiveRoom]) -> list[dict[str, Any]]:
    today = datetime.now(UTC).date()
    listed = []
    for r in active:
        entry: dict[str, Any] = {"room": r.room, "count": r.count, "iso": None, "clock": None}
        if r.last_ts is not None:
            when = datetime.fromtimestamp(r.last_ts, UTC)
            entry["iso"] = when.isoformat(timespec="milliseconds")
            entry["clock"] = when.strftime("%H:%M" if when.date() == today else "%Y-%m-%d %H:%M")
        listed.append(entry)
    return listed


async def open_room(request: web.Request) -> web.Response:
    """The room field's form without script: a redirect to the room, or a 400 that says why."""
    room = request.query.get("room", "").strip()
    if forms.ROOM_RE.fullmatch(room) is None:
        raise web.HTTPBadRequest(text=f"{ROOM_RULE}. Go back and try another name.")
    raise web.HTTPFound(f"/rooms/{room}")
