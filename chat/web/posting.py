"""POST /a/message/new: validate, store, then the message as JSON or a redirect to ``next``.

A ``client_key`` (the form) or ``Idempotency-Key`` (the API) names one message: the same key
again in the same room, within the store's window, answers the message stored the first time
with ``Idempotent-Replayed: true`` and stores nothing; with another body it is a 422.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable

from aiohttp import web

from ..stores.base import KeyConflict, Posted
from . import forms
from .keys import feed_key, settings_key

# A client_key (form) or Idempotency-Key (/api/): the same names messages in either.
CLIENT_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def client_key(value: str | None) -> str | None:
    if not value:
        return None
    if CLIENT_KEY_RE.fullmatch(value) is None:
        raise web.HTTPBadRequest(text="client_key must be 1 to 64 of A-Z a-z 0-9 _ -")
    return value


async def reply(publishing: Awaitable[Posted], status: int = 200) -> web.Response:
    """The stored message as JSON; a repeated key gets the first answer, marked as a replay."""
    try:
        posted = await publishing
    except KeyConflict as exc:
        raise web.HTTPUnprocessableEntity(text=str(exc)) from None
    headers = {"Idempotent-Replayed": "true"} if posted.replayed else None
    return web.Response(status=status, body=posted.message.data, headers=headers,
                        content_type="application/json")


async def new_message(request: web.Request) -> web.Response:
    settings = request.app[settings_key]
    form = await forms.read_form(request)
    room = forms.room(form.get("room"))
    body = forms.body(form.get("body"), settings)
    name = forms.name(form.get("name"), settings)
    key = client_key(form.get("client_key"))
    next_path = forms.next_path(form.get("next"))  # checked before anything is stored
    response = await reply(request.app[feed_key].publish(room, body, name, key))
    if next_path is not None:
        raise web.HTTPFound(next_path)
    return response
