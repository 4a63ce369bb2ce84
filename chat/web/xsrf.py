"""Cross-site request forgery protection: a signed double-submit token, plus Fetch Metadata.

Every POST under /a/ must pass, in this order (each check alone refuses with 403):

1. ``Sec-Fetch-Site`` is not ``cross-site``, and ``Origin``, when sent, is this site. Browsers
   send both on every cross-origin POST; neither needs the body, a cookie or a secret. They stop
   the request a planted cookie would otherwise let through: a sibling subdomain or a page on
   plain HTTP can set our cookie to a token it fetched itself, but cannot make a browser lie
   about where the request comes from.
2. The ``_xsrf`` cookie is a token this server made: a random value and its HMAC under the
   server secret (``--secret``, else the store's, shared by every process). A cookie the client
   chose, or one from before the secret changed, is refused, whatever its bytes.
3. The ``_xsrf`` form field, or the ``X-XSRFToken`` header, equals the cookie (in constant time).
   Another site can make a browser send our cookie but cannot read it, so it cannot put the
   matching value in the form.

The page hands out a fresh cookie whenever the one it got fails check 2, so a page open across a
secret change recovers by fetching the page once (static/chat.js does, on a 403). The cookie is
readable by script on purpose (the page's JavaScript copies it into its requests): it protects
nothing by being secret from our own origin. SameSite=Lax keeps it off cross-site POSTs as
another line, and ``Secure`` keeps it off plain HTTP once the client came over TLS. /api/ has no
token: a bearer key is never attached by a browser on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import AsyncIterator

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from yarl import URL

from . import forms
from .keys import feed_key, issued_key, limits_key, settings_key, tokens_key

COOKIE = "_xsrf"
HEADER = "X-XSRFToken"
BEARER_PREFIX = "/api/"
_NONCE = 18  # bytes: 24 characters of URL-safe base64, as is the MAC
_TOKEN = re.compile(r"[A-Za-z0-9_-]{48}")
_SAFE = re.compile(r"[A-Za-z0-9_-]+")
# RFC 6265 cookie-pairs exactly: token names, cookie-octet values, "; " between.
_PAIR = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+=[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"
_PLAIN = re.compile(rf"{_PAIR}(?:; ?{_PAIR})*")


def sign(secret: bytes, nonce: bytes) -> str:
    """The token for ``nonce``: the nonce and its HMAC-SHA256 (first 18 bytes), in base64url."""
    mac = hmac.new(secret, b"chat-xsrf:" + nonce, hashlib.sha256).digest()[:_NONCE]
    return (base64.urlsafe_b64encode(nonce) + base64.urlsafe_b64encode(mac)).decode()


class Tokens:
    """Makes and checks tokens under the server secret (set at startup by ``secret_ctx``)."""

    def __init__(self, secret: bytes = b"") -> None:
        self.secret = secret

    def mint(self) -> str:
        assert self.secret, "no server secret yet: secret_ctx sets it at startup"
        return sign(self.secret, secrets.token_bytes(_NONCE))

    def valid(self, token: str | None) -> bool:
        """Did this server make ``token``? Any text at all is answered, never raised on."""
        if token is None or not self.secret or not _TOKEN.fullmatch(token):
            return False
        expected = sign(self.secret, base64.urlsafe_b64decode(token[:24]))
        return hmac.compare_digest(expected, token)


async def secret_ctx(app: web.Application) -> AsyncIterator[None]:
    """At startup, after the store is open: ``--secret``, else the store's own secret."""
    secret = app[settings_key].secret
    app[tokens_key].secret = secret.encode() if secret else await app[feed_key].store.secret()
    yield


def cookie(request: web.Request) -> str | None:
    """The ``_xsrf`` cookie, as ``request.cookies`` has it, without parsing every cookie.

    aiohttp's parser builds a Morsel per cookie on every POST. A header that is nothing but plain
    ``name=value`` pairs (what browsers send for our cookies) says the same thing to a split;
    anything else (quotes, spaces, pairs without ``=``) goes to aiohttp's parser.
    """
    header = request.headers.get(hdrs.COOKIE)
    if not header:
        return None
    if _PLAIN.fullmatch(header):
        found = None
        for part in header.split(";"):
            name, _, value = part.partition("=")
            if name.lstrip() == COOKIE:
                found = value
        if found is not None and _SAFE.fullmatch(found):
            return found
    return request.cookies.get(COOKIE)


def issued_cookie(request: web.Request) -> str | None:
    """The ``_xsrf`` cookie if this server issued it, else None; its HMAC checked once."""
    if issued_key not in request:
        current = cookie(request)
        request[issued_key] = current if request.app[tokens_key].valid(current) else None
    return request[issued_key]


def token(request: web.Request) -> tuple[str, bool]:
    """The client's token if this server made it, else a new one; and whether it is new (so the
    cookie must be set)."""
    current = issued_cookie(request)
    if current is not None:
        return current, False
    return request.app[tokens_key].mint(), True


def set_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    response.set_cookie(COOKIE, value, path="/", samesite="Lax", httponly=False,
                        secure=request.app[limits_key].https(request), max_age=365 * 24 * 3600)


def _origin_of(url: URL) -> tuple[str, str, int | None]:
    return url.scheme, (url.host or "").lower(), url.port


def same_origin(request: web.Request, origin: str) -> bool:
    """Is ``origin`` (an ``Origin`` header) this site? The host is the one the client asked for
    (``Host``, or a trusted proxy's ``X-Forwarded-Host``); the scheme must be https when the
    client came over TLS. Anything that does not parse (``null`` included) is another origin."""
    try:
        theirs = URL(origin)
        if theirs.scheme not in ("http", "https") or not theirs.host or theirs.path not in ("", "/"):
            return False
        limits = request.app[limits_key]
        host = request.host
        forwarded = request.headers.getall("X-Forwarded-Host", ())
        if forwarded and limits.from_proxy(request):
            host = forwarded[-1].rsplit(",", 1)[-1].strip()
        ours = URL(f"{theirs.scheme}://{host}")
        if limits.https(request) and theirs.scheme != "https":
            return False
        return _origin_of(theirs) == _origin_of(ours)
    except (ValueError, TypeError, UnicodeError):
        return False


def forbidden(text: str) -> web.HTTPForbidden:
    return web.HTTPForbidden(text=text)


@web.middleware
async def check_xsrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method != "POST" or request.match_info.http_exception is not None:
        return await handler(request)
    # No double-submit token under /api/: those routes authenticate with a bearer key in the
    # Authorization header, which a browser never attaches by itself the way it attaches a
    # cookie, so a page on another site cannot make a browser send an authenticated request.
    # Decided by the route that matched (not by the raw path), so no spelling of a path can
    # carry a form post past this check.
    if request.match_info.route.resource is not None and \
            request.match_info.route.resource.canonical.startswith(BEARER_PREFIX):
        return await handler(request)
    if request.headers.get("Sec-Fetch-Site", "").strip().lower() == "cross-site":
        raise forbidden("cross-site request refused (Sec-Fetch-Site: cross-site)")
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None and not same_origin(request, origin):
        raise forbidden("cross-origin request refused: the Origin is not this site")
    expected = cookie(request)
    if not expected:
        raise forbidden("missing _xsrf cookie: load the page first")
    if issued_cookie(request) is None:
        raise forbidden("the _xsrf cookie is not one this server issued (or it was issued "
                        "before the server's secret changed): load the page again")
    # The header first: it needs no body. Else the form, read (charset first) for the handler too.
    sent = request.headers.get(HEADER) or (await forms.read_form(request)).get(COOKIE)
    if not sent:
        raise forbidden("missing _xsrf field or X-XSRFToken header")
    # compare_digest: the time taken must not tell how much of a guess was right.
    if not hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), expected.encode()):
        raise forbidden("_xsrf does not match the _xsrf cookie")
    return await handler(request)
