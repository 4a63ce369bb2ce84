"""GET /a/rooms: the active rooms, for the room list on ``/``.

``{"rooms": [{"room": str, "count": int, "last_ts": float | null}, ...]}``, at most ``LISTED``:
rooms with people in them first, then by their newest message, newest first. Made from RAM (the
feed's history windows and the presence rosters) and the store's list of recent rooms, which the
feed asks for at most once a second (``Feed.active_rooms``), so the list stays cheap to make.
"""

from __future__ import annotations

from aiohttp import web

from .keys import feed_key

LISTED = 50


async def rooms(request: web.Request) -> web.Response:
    active = await request.app[feed_key].active_rooms(LISTED)
    return web.json_response({"rooms": [r.as_dict() for r in active]},
                             headers={"Cache-Control": "no-cache"})
