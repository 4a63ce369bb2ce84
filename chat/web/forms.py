"""Read and validate request fields; every rejection is an HTTPException with a reason in words."""

from __future__ import annotations

import asyncio
import codecs
import re
import urllib.parse
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDict, MultiDictProxy

from ..settings import Settings
from .keys import form_key, settings_key

DEFAULT_ROOM = "main"
ROOM_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# A same-origin path: one leading "/", then no second "/" or "\" (browsers read "/\evil" as
# "//evil", a protocol-relative URL to another host), and no control characters or spaces
# (browsers drop tabs and newlines from URLs, so "/\t/evil" would also become "//evil", and
# CR/LF would split the Location header). This closes the open redirect (CWE-601).
_NEXT_RE = re.compile(r"/(?![/\\])[^\x00-\x20\x7f\\]{0,2047}")
_LINE_BREAK = re.compile(r"\r\n?")
# More fields than any of our forms has, by far (aiohttp's own multipart limit is the same).
_MAX_FIELDS = 1000
# An unpaired surrogate cannot be encoded as UTF-8: stored, it would break every page showing it.
# Only an exotic charset (utf-7, unicode_escape) can produce one; UTF-8 itself cannot.
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
# Control characters other than tab and line feed (C0, DEL and C1): invisible on the page, and
# dropped (NUL) or obeyed (ESC) by what shows the text elsewhere. A body keeps tabs and newlines.
_BODY_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_NAME_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


async def read_form(request: web.Request) -> MultiDictProxy[str]:
    """The posted form, parsed once per request; 400/408/413 when it is not a form of text."""
    if form_key in request:
        return request[form_key]
    if request.content_type not in _FORM_TYPES:
        raise web.HTTPBadRequest(
            text="expected a form: application/x-www-form-urlencoded or multipart/form-data")
    limit = request.app[settings_key].body_timeout
    try:
        if request.content.is_eof():
            # The whole body is here (a small form comes with its headers): nothing to wait
            # for, so no timer either.
            form = await _parse(request)
        else:
            # A body sent byte by byte must not hold this handler for long (slowloris).
            async with asyncio.timeout(limit):
                form = await _parse(request)
    except TimeoutError:
        raise web.HTTPRequestTimeout(text=f"the request body did not arrive within {limit:g} s",
                                     headers={"Connection": "close"}) from None
    except UnicodeDecodeError as exc:
        raise web.HTTPBadRequest(text=f"the form is not valid {_charset_name(exc.encoding)}") \
            from None
    except LookupError as exc:  # a charset Python does not know, or one that is not text
        raise web.HTTPBadRequest(text=f"unsupported charset: {exc}") from None
    except web.RequestPayloadError as exc:  # e.g. a Content-Encoding that does not decode
        error = web.HTTPBadRequest(text=f"could not read the request body: {_why(exc)}")
        error.force_close()  # aiohttp drops the connection after this; the client must know
        raise error from None
    except (ValueError, RuntimeError, HttpProcessingError) as exc:  # malformed multipart
        raise web.HTTPBadRequest(text=f"malformed form: {_why(exc)}") from None
    except AssertionError:
        # aiohttp 3.14's multipart reader asserts on some input: a first part named _charset_
        # under a boundary longer than 30 characters (Chrome's are 38) fails "Chunk size must be
        # greater or equal than boundary length + 2".
        raise web.HTTPBadRequest(text="malformed form: multipart this server cannot read") \
            from None
    for key, value in form.items():
        if not isinstance(value, str):
            raise web.HTTPBadRequest(text=f"field {key!r} must be text, not a file")
        if _SURROGATE_RE.search(key) or _SURROGATE_RE.search(value):
            raise web.HTTPBadRequest(text="the form is not valid text (unpaired surrogate)")
    request[form_key] = form
    return form


async def _parse(request: web.Request) -> MultiDictProxy[Any]:
    if request.content_type == "multipart/form-data":
        return await request.post()
    # URL-encoded: parsed here rather than by aiohttp, whose decoding turns percent-escapes that
    # are not valid in the charset (%FF in UTF-8) into U+FFFD silently. Here they are a 400.
    pairs = parse_urlencoded(await request.read(), request.charset or "utf-8")
    return MultiDictProxy(MultiDict(pairs))


def parse_urlencoded(raw: bytes, charset: str) -> list[tuple[str, str]]:
    """``application/x-www-form-urlencoded`` pairs, as ``urllib.parse.parse_qsl`` with blank
    values kept and strict decoding, but in C speed: urllib decodes each ``%XX`` in Python,
    which made a post of 4,096 emoji (49,152 escapes) cost 3 ms of the event loop."""
    raw = raw.rstrip()
    if raw.count(b"&") >= _MAX_FIELDS:
        raise ValueError(f"more than {_MAX_FIELDS} fields")
    pairs = []
    for field in raw.split(b"&"):
        if field:
            name, _, value = field.partition(b"=")
            pairs.append((_unquote(name).decode(charset), _unquote(value).decode(charset)))
    return pairs


def _unquote(part: bytes) -> bytes:
    part = part.replace(b"+", b" ")
    if b"%" not in part:
        return part
    try:  # every "%XX" made a "\xXX" escape (backslashes themselves escaped first)
        return codecs.escape_decode(part.replace(b"\\", b"\\\\").replace(b"%", b"\\x"))[0]
    except ValueError:  # a "%" without two hex digits after it stays as it is, as in browsers
        return urllib.parse.unquote_to_bytes(part)


def _why(exc: Exception) -> str:
    """aiohttp's own words for a body it could not read, without its "400, message:" prefix."""
    cause = exc.__cause__ if isinstance(exc.__cause__, HttpProcessingError) else exc
    return cause.message if isinstance(cause, HttpProcessingError) else str(cause)


def _charset_name(encoding: str) -> str:
    try:
        return "UTF-8" if codecs.lookup(encoding).name == "utf-8" else encoding
    except LookupError:
        return encoding


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
    if _BODY_CONTROL_RE.search(text):
        raise web.HTTPBadRequest(
            text="body must not contain control characters (tab and newline are fine)")
    return text


def name(value: str | None, settings: Settings) -> str | None:
    text = (value or "").strip()
    if len(text) > settings.max_name:
        raise web.HTTPBadRequest(text=f"name is longer than {settings.max_name} characters")
    if _NAME_CONTROL_RE.search(text):
        raise web.HTTPBadRequest(text="name must be one line without control characters")
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
