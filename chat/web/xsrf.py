"""Cross-site request forgery protection: the double-submit cookie of Tornado's chatdemo.

The page sets a random ``_xsrf`` cookie; every POST under /a/ must send the same value back in
the ``_xsrf`` field or the ``X-XSRFToken`` header. Another site can make a browser send our cookie,
but cannot read it, so it cannot put the matching value in the form. The cookie is readable
by script on purpose (the page's JavaScript copies it into its requests): it protects nothing
by being secret from our own origin. SameSite=Lax keeps it off cross-site POSTs as a second line.
"""

from __future__ import annotations

import hmac
import re
import secrets

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from . import forms

COOKIE = "_xsrf"
HEADER = "X-XSRFToken"
BEARER_PREFIX = "/api/"
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
# RFC 6265 cookie-pairs exactly: token names, cookie-octet values, "; " between.
_PAIR = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+=[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"
_PLAIN = re.compile(rf"{_PAIR}(?:; ?{_PAIR})*")


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
        if found is not None and _TOKEN.fullmatch(found):
            return found
    return request.cookies.get(COOKIE)


def token(request: web.Request) -> tuple[str, bool]:
    """The client's token, or a new one; and whether it is new (so the cookie must be set)."""
    current = cookie(request)
    if current and _TOKEN.fullmatch(current):  # secrets.token_urlsafe's alphabet
        return current, False
    return secrets.token_urlsafe(24), True


def set_cookie(response: web.StreamResponse, value: str) -> None:
    response.set_cookie(COOKIE, value, path="/", samesite="Lax", httponly=False,
                        max_age=365 * 24 * 3600)


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
    expected = cookie(request)
    if not expected:
        raise web.HTTPForbidden(text="missing _xsrf cookie: load the page first")
    sent = (await forms.read_form(request)).get(COOKIE) or request.headers.get(HEADER)
    if not sent:
        raise web.HTTPForbidden(text="missing _xsrf field or X-XSRFToken header")
    # compare_digest: the time taken must not tell how much of a guess was right.
    if not hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), expected.encode()):
        raise web.HTTPForbidden(text="_xsrf does not match the _xsrf cookie")
    return await handler(request)
