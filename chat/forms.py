"""Read and validate request fields; every rejection is an HTTPException with a reason in words."""

from __future__ import annotations

import asyncio
import re

from aiohttp import web
from multidict import MultiDictProxy

from .keys import settings_key
from .settings import Settings

DEFAULT_ROOM = "main"
ROOM_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# A same-origin path: one leading "/", then no second "/" or "\" (browsers read "/\evil" as
# "//evil", a protocol-relative URL to another host), and no control characters or spaces
# (browsers drop tabs and newlines from URLs, so "/\t/evil" would also become "//evil", and
# CR/LF would split the Location header). This closes the open redirect (CWE-601).
_NEXT_RE = re.compile(r"/(?![/\\])[^\x00-\x20\x7f\\]{0,2047}")
_LINE_BREAK = re.compile(r"\r\n?")


async def read_form(request: web.Request) -> MultiDictProxy[str]:
    """The posted form (parsed once per request, aiohttp caches it); 400/408/413 when not one."""
    if request.content_type not in _FORM_TYPES:
        raise web.HTTPBadRequest(
            text="expected a form: application/x-www-form-urlencoded or multipart/form-data")
    limit = request.app[settings_key].body_timeout
    try:
        # A body sent byte by byte must not hold this handler for long (slowloris).
        async with asyncio.timeout(limit):
            form = await request.post()
    except TimeoutError:
        raise web.HTTPRequestTimeout(text=f"the request body did not arrive within {limit:g} s",
                                     headers={"Connection": "close"}) from None
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="the form is not valid UTF-8") from None
    except ValueError as exc:  # malformed multipart
        raise web.HTTPBadRequest(text=f"malformed form: {exc}") from None
    for key, value in form.items():
        if not isinstance(value, str):
            raise web.HTTPBadRequest(text=f"field {key!r} must be text, not a file")
    return form  # type: ignore[return-value]  # only str values remain


def room(value: str | None) -> str:
    """A valid room name (default ``main``); an invalid one is a 404, as no such room can exist."""
    if not value:
        return DEFAULT_ROOM
    if ROOM_RE.fullmatch(value) is None:
        raise web.HTTPNotFound(text="invalid room name: use 1 to 64 of A-Z a-z 0-9 _ -")
    return value


def body(value: str | None, settings: Settings) -> str:
    # Browsers submit a textarea's line breaks as CRLF (HTML form encoding, with or without
    # script); store them as "\n", and count them as the one character the textarea showed.
    text = _LINE_BREAK.sub("\n", value or "").strip()
    if not text:
        raise web.HTTPBadRequest(text="body is required")
    if len(text) > settings.max_body:
        raise web.HTTPBadRequest(text=f"body is longer than {settings.max_body} characters")
    return text


def name(value: str | None, settings: Settings) -> str | None:
    text = (value or "").strip()
    if len(text) > settings.max_name:
        raise web.HTTPBadRequest(text=f"name is longer than {settings.max_name} characters")
    return text or None


def next_path(value: str | None) -> str | None:
    """Where to redirect after a no-JavaScript post: a same-origin path or nothing."""
    if not value:
        return None
    if _NEXT_RE.fullmatch(value) is None:
        raise web.HTTPBadRequest(text="next must be a path on this site, like /rooms/main")
    return value


def cursor(value: str | None) -> str | None:
    """The raw cursor; "" is none. Its validity is the store's question (a bad one resets)."""
    return value or None
