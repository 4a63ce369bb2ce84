"""GET /a/message/history: scrolling back, a page of older messages at a time.

``?room=R&before=ID&limit=N`` answers ``{"messages": [...oldest first, at most N], "more":
bool}``: the messages just before ``before`` (without it, the newest N), and whether older ones
are still kept. A ``before`` that is malformed or of another history gets the newest page with
``"reset": true``; one older than retention gets nothing older (``"more": false``). The rule
lives in ``Feed.older``; RAM answers what it holds, the store the rest.
"""

from __future__ import annotations

from aiohttp import web

from . import forms
from .keys import feed_key

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise web.HTTPBadRequest(text=f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(value)


async def history(request: web.Request) -> web.Response:
    query = request.query
    room = forms.room(query.get("room"))
    count = limit(query.get("limit"))
    before = query.get("before") or None
    page, more = await request.app[feed_key].older(room, before, count)
    body = b'{"messages":[%s],"more":%s%s}' % (
        b",".join(m.data for m in page.messages), b"true" if more else b"false",
        b',"reset":true' if page.reset is not None else b"")
    return web.Response(body=body, content_type="application/json",
                        headers={"Cache-Control": "no-cache"})
