"""POST /api/rooms/{room}/messages: the publish API for programs, with bearer API keys.

The checks run in this order, and a request that fails one stores nothing: the key (401), the
key's rate (429), the Idempotency-Key header (400), the content type (415), the size (413), the
JSON (400), then the same text and room rules as the page's form.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from typing import Any

from aiohttp import web

from . import forms
from .keys import feed_key, limits_key, settings_key
from .limits import refuse
from .posting import CLIENT_KEY_RE, reply

IDEMPOTENCY_HEADER = "Idempotency-Key"
_FIELDS = frozenset({"body", "name"})
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
_EXAMPLE = '{"body": "hello", "name": null}'


@functools.lru_cache(maxsize=4)
def _digests(keys: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(hashlib.sha256(key.encode()).digest() for key in keys)


def match_key(sent: str, keys: tuple[str, ...]) -> int | None:
    """The index of the configured key equal to ``sent``, or None.

    The time taken must not tell a guesser anything: both sides are hashed first (so the
    comparison does not depend on the keys' lengths either), every key is compared, with
    hmac.compare_digest, and the loop never stops early.
    """
    digest = hashlib.sha256(sent.encode("utf-8", "surrogateescape")).digest()
    found = None
    for index, expected in enumerate(_digests(keys)):
        if hmac.compare_digest(digest, expected) and found is None:
            found = index
    return found


def _unauthorized(text: str, invalid: bool = False) -> web.HTTPUnauthorized:
    # RFC 6750: a request that carried a token learns that this token is not valid.
    challenge = 'Bearer error="invalid_token"' if invalid else "Bearer"
    return web.HTTPUnauthorized(text=text, headers={"WWW-Authenticate": challenge})


def authenticate(request: web.Request) -> str:
    """The name the rate limits and logs use for the request's key ("api-key-2"); never the key."""
    keys = request.app[settings_key].api_keys
    if not keys:
        raise _unauthorized("the publish API is off: this server has no API keys "
                            "(--api-keys or CHAT_API_KEYS)")
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("missing API key: send the header Authorization: Bearer <key>")
    index = match_key(token, keys)
    if index is None:
        raise _unauthorized("invalid API key", invalid=True)
    return f"api-key-{index + 1}"


def idempotency_key(request: web.Request) -> str | None:
    values = request.headers.getall(IDEMPOTENCY_HEADER, [])
    if not values:
        return None
    if len(values) > 1 or not CLIENT_KEY_RE.fullmatch(values[0]):
        raise web.HTTPBadRequest(text=f"{IDEMPOTENCY_HEADER} must be one value of 1 to 64 "
                                      "of A-Z a-z 0-9 _ -")
    return values[0]


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; 415 when it is not JSON, 413 over --max-request, else 400."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="expected Content-Type: application/json")
    if (request.charset or "utf-8").lower() not in ("utf-8", "utf8"):
        raise web.HTTPUnsupportedMediaType(text="JSON must be UTF-8 (RFC 8259)")
    forms.refuse_declared_size(request)
    raw = await forms.in_time(request, request.read())
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_object,
                          parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="the body is not valid UTF-8") from None
    except RecursionError:
        raise web.HTTPBadRequest(text="the JSON is nested too deeply") from None
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text=f"expected a JSON object like {_EXAMPLE}")
    return data


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; a name given twice is refused rather than silently taking one of them."""
    data = dict(pairs)
    if len(data) != len(pairs):
        raise ValueError("a field is given twice")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def text_field(data: dict[str, Any], field: str, required: bool) -> str | None:
    value = data.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise web.HTTPBadRequest(text=f"{field} is required and must be a string" if required
                                 else f"{field} must be a string or null")
    if _SURROGATE_RE.search(value):  # "\ud800" is valid JSON, but not text that UTF-8 can carry
        raise web.HTTPBadRequest(text=f"{field} is not valid text (unpaired surrogate)")
    return value


async def new_message(request: web.Request) -> web.Response:
    who = authenticate(request)
    limits = request.app[limits_key]
    wait = limits.api_posts.take(who)
    if wait:
        raise refuse(request, who, "api_posts", 429, wait, limits)
    key = idempotency_key(request)
    data = await read_json(request)
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise web.HTTPBadRequest(text=f"unknown field {unknown[0][:64]!r}: expected {_EXAMPLE}")
    settings = request.app[settings_key]
    room = forms.room(request.match_info["room"])
    body = forms.body(text_field(data, "body", required=True), settings)
    name = forms.name(text_field(data, "name", required=False), settings)
    # The store decides what a key seen before means (chat.stores.base.Store.publish).
    return await reply(request.app[feed_key].publish(room, body, name, key), status=201)
