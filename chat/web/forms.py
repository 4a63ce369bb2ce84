"""Read and validate request fields; every rejection is an HTTPException with a reason in words."""

from __future__ import annotations

import asyncio
import binascii
import codecs
import contextlib
import re
import urllib.parse
from collections.abc import Awaitable
from typing import TypeVar

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import BodyPartReader
from multidict import MultiDict, MultiDictProxy

from ..settings import Settings
from .keys import form_key, settings_key

T = TypeVar("T")

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
# None of the allowed charsets can produce one (utf-7 and unicode_escape could): a second line.
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
# Control characters other than tab and line feed (C0, DEL and C1): invisible on the page, and
# dropped (NUL) or obeyed (ESC) by what shows the text elsewhere. A body keeps tabs and newlines.
_BODY_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_NAME_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


# The charsets a form may be in, as a client may spell them, and the codec that decodes each.
# What a browser sends (UTF-8: our pages are UTF-8) and the single-byte ones old clients use;
# every one of them decodes in linear time and cannot spell an unpaired surrogate. Anything
# else (punycode's decoder is quadratic, utf-7 spells surrogates, unicode_escape runs an
# escape language) is a 415 before a byte is decoded.
CHARSETS = {
    "utf-8": "utf-8", "utf8": "utf-8", "unicode-1-1-utf-8": "utf-8",
    "iso-8859-1": "latin-1", "iso8859-1": "latin-1", "iso_8859-1": "latin-1", "latin1": "latin-1",
    "latin-1": "latin-1", "l1": "latin-1",
    "windows-1252": "cp1252", "cp1252": "cp1252", "x-cp1252": "cp1252",
    "us-ascii": "ascii", "ascii": "ascii",
}
CHARSET_FIELD = "_charset_"  # HTML: the browser fills it with the charset it used


def codec(label: str | None, default: str = "utf-8") -> str:
    """The codec for a declared charset (None: ``default``); 415 for any other charset."""
    if label is None:
        return default
    found = CHARSETS.get(label.strip().lower())
    if found is None:
        raise unsupported(label)
    return found


def unsupported(label: str) -> web.HTTPUnsupportedMediaType:
    error = web.HTTPUnsupportedMediaType(
        text=f"unsupported charset {label[:40]!r}: send UTF-8 (or ISO-8859-1 or windows-1252)")
    error.force_close()  # the rest of the body is never read
    return error


async def read_form(request: web.Request) -> MultiDictProxy[str]:
    """The posted form, parsed once per request; 400/408/413/415 when it is not a form of text.

    The charset is checked before any byte is decoded, and the size before any byte is read.
    """
    if form_key in request:
        return request[form_key]
    if request.content_type not in _FORM_TYPES:
        raise web.HTTPBadRequest(
            text="expected a form: application/x-www-form-urlencoded or multipart/form-data")
    settings = request.app[settings_key]
    refuse_declared_size(request)
    charset = request.charset
    default = codec(charset)  # a 415 before the body is read
    try:
        form = await in_time(request, _parse(request, default, charset is not None,
                                             settings.max_request))
    except (ValueError, RuntimeError, HttpProcessingError) as exc:  # malformed multipart
        raise web.HTTPBadRequest(text=f"malformed form: {_why(exc)}") from None
    except AssertionError:
        # aiohttp 3.14's multipart reader asserts on some input: a first part named _charset_
        # under a boundary longer than 30 characters (Chrome's are 38) fails "Chunk size must be
        # greater or equal than boundary length + 2".
        raise web.HTTPBadRequest(text="malformed form: multipart this server cannot read") \
            from None
    # Values are decoded strictly by an allowed codec, none of which can make a surrogate; a
    # multipart field name is decoded by aiohttp, which keeps undecodable bytes as surrogates.
    for key in form:
        if _SURROGATE_RE.search(key):
            raise web.HTTPBadRequest(text="the form is not valid text (unpaired surrogate)")
    request[form_key] = form
    return form


def refuse_declared_size(request: web.Request) -> None:
    """413 before a byte is read, for a body that says it is over --max-request."""
    limit = request.app[settings_key].max_request
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)


async def in_time(request: web.Request, reading: Awaitable[T]) -> T:
    """``reading`` (of the request's body) within --body-timeout: 408 when the body is late,
    400 (closing the connection) when it cannot be read at all."""
    limit = request.app[settings_key].body_timeout
    try:
        if request.content.is_eof():
            # The whole body is here (a small one comes with its headers): nothing to wait
            # for, so no timer either.
            return await reading
        # A body sent byte by byte must not hold this handler for long (slowloris).
        async with asyncio.timeout(limit):
            return await reading
    except TimeoutError:
        raise web.HTTPRequestTimeout(text=f"the request body did not arrive within {limit:g} s",
                                     headers={"Connection": "close"}) from None
    except web.RequestPayloadError as exc:  # e.g. a broken chunked body
        error = web.HTTPBadRequest(text=f"could not read the request body: {_why(exc)}")
        error.force_close()  # aiohttp drops the connection after this; the client must know
        raise error from None


async def _parse(request: web.Request, default: str, declared: bool,
                 max_size: int) -> MultiDictProxy[str]:
    if request.content_type == "multipart/form-data":
        return await _multipart(request, default, max_size)
    # URL-encoded: parsed here rather than by aiohttp, whose decoding turns percent-escapes that
    # are not valid in the charset (%FF in UTF-8) into U+FFFD silently. Here they are a 400.
    # Split and unescaped as bytes first, so that a _charset_ field is checked before anything
    # is decoded in the charset it names.
    pairs = urlencoded_pairs(await request.read())
    named = [codec(v.decode("latin-1")) for k, v in pairs if k == CHARSET_FIELD.encode()]
    charset = default if declared or not named else named[0]
    return MultiDictProxy(MultiDict((_decode(k, charset), _decode(v, charset)) for k, v in pairs))


def _decode(data: bytes, charset: str) -> str:
    try:
        return data.decode(charset)
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text=f"the form is not valid {_charset_name(charset)}") \
            from None


async def _multipart(request: web.Request, default: str, max_size: int) -> MultiDictProxy[str]:
    """Each part's charset (its own, else a first ``_charset_`` part's, else the request's) is
    checked before the part is decoded; a part that is a file or nested multipart is a 400."""
    reader = await request.multipart()
    fields: MultiDict[str] = MultiDict()
    while True:
        try:
            part = await reader.next()
        except UnicodeDecodeError:  # a _charset_ part that is not even a name
            raise unsupported("(not UTF-8)") from None
        except (ValueError, RuntimeError, HttpProcessingError):
            # aiohttp 3.14 takes every part named _charset_ (RFC 7578: the first) as the default
            # charset, then misreads the boundary after it: a 400 (read_form), unless the
            # charset it named is one no part may be decoded in (415, as for the first part).
            codec(getattr(reader, "_default_charset", None))
            raise
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise web.HTTPBadRequest(text="malformed form: a part is itself multipart")
        name = part.name
        if name is None:
            raise web.HTTPBadRequest(text="malformed form: a part without a field name")
        content_type = part.headers.get(hdrs.CONTENT_TYPE)
        if part.filename is not None or (
                content_type is not None and not content_type.lower().startswith("text/")):
            raise web.HTTPBadRequest(text=f"field {name[:64]!r} must be text, not a file")
        charset = codec(part.get_charset(default), default)
        raw = await part.read(decode=True)
        if request.content.total_bytes > max_size:
            raise web.HTTPRequestEntityTooLarge(max_size=max_size,
                                                actual_size=request.content.total_bytes)
        value = _decode(bytes(raw), charset)
        if name == CHARSET_FIELD:
            codec(value)
        fields.add(name, value)
        if len(fields) > _MAX_FIELDS:
            raise web.HTTPBadRequest(text=f"malformed form: more than {_MAX_FIELDS} fields")
    # A first part named _charset_ is taken by aiohttp's reader as the default for the parts
    # after it (RFC 7578); checked above through get_charset(), and here if no part followed.
    codec(getattr(reader, "_default_charset", None))
    return MultiDictProxy(fields)


def urlencoded_pairs(raw: bytes) -> list[tuple[bytes, bytes]]:
    """``application/x-www-form-urlencoded`` pairs, unescaped but not decoded, as
    ``urllib.parse.parse_qsl`` splits them (blank values kept), but in C speed: urllib decodes
    each ``%XX`` in Python, which made a post of 4,096 emoji (49,152 escapes) cost 3 ms of the
    event loop."""
    raw = raw.rstrip()
    if raw.count(b"&") >= _MAX_FIELDS:
        raise ValueError(f"more than {_MAX_FIELDS} fields")
    pairs = []
    for field in raw.split(b"&"):
        if field:
            name, _, value = field.partition(b"=")
            pairs.append((_unquote(name), _unquote(value)))
    return pairs


def _unquote(part: bytes) -> bytes:
    if b"+" in part:  # (a scan is cheaper than a copy of a long value without one)
        part = part.replace(b"+", b" ")
    if b"%" not in part:
        return part
    if len(part) % 3 == 0 and part[::3].count(b"%") * 3 == len(part):
        # Nothing but escapes (a body of emoji, of any non-Latin script): hex pairs to bytes.
        digits = part.translate(None, b"%")
        if len(digits) * 3 == len(part) * 2:  # no "%" where a hex digit belongs
            with contextlib.suppress(binascii.Error):
                return binascii.unhexlify(digits)
    try:  # every "%XX" made a "\xXX" escape (backslashes themselves escaped first)
        decoded: bytes = codecs.escape_decode(part.replace(b"\\", b"\\\\").replace(b"%", b"\\x"))[0]
        return decoded
    except ValueError:  # a "%" without two hex digits after it stays as it is, as in browsers
        return urllib.parse.unquote_to_bytes(part)


def _why(exc: Exception) -> str:
    """aiohttp's own words for a body it could not read, without its "400, message:" prefix."""
    cause = exc.__cause__ if isinstance(exc.__cause__, HttpProcessingError) else exc
    return cause.message if isinstance(cause, HttpProcessingError) else str(cause)


def _charset_name(encoding: str) -> str:
    return {"utf-8": "UTF-8", "latin-1": "ISO-8859-1", "cp1252": "windows-1252"}.get(
        encoding, encoding)


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
