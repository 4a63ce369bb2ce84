"""GET /a/rooms: the rooms this process knows to be active, for the room list on ``/``.

``{"rooms": [{"room": str, "count": int, "last_ts": float | null}, ...]}``, at most ``LISTED``:
rooms with people in them first, then by their newest message, newest first. Only what RAM holds
is consulted (the feed's history windows and the presence rosters), never the store, so the
list is cheap to make and a room nobody has visited since a restart is not in it.
"""

from __future__ import annotations

from aiohttp import web

from .keys import feed_key

LISTED = 50


async def rooms(request: web.Request) -> web.Response:
    active = request.app[feed_key].active_rooms(LISTED)
    return web.json_response({"rooms": [r.as_dict() for r in active]},
                             headers={"Cache-Control": "no-cache"})
