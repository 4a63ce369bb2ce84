"""Links in message text: http and https URLs become ``<a>`` elements, everything else stays text.

A pure function over a string, used as the ``linkify`` Jinja filter by ``message.html``, so the
JSON ``html`` and the page show the same links. Only the two schemes are ever linked: a
``javascript:`` or ``data:`` URL stays text, whatever its case or spelling. Every character of the
input is HTML-escaped exactly once, inside and outside the links.

Linear time on any input: one regular expression whose only repetition is a single character
class (nothing to backtrack into), then trailing punctuation is peeled off in one pass from the
end of each candidate.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from markupsafe import Markup, escape

REL = "noopener noreferrer nofollow ugc"

# A URL runs until whitespace, a control character, an invisible formatting character (a bidi
# override inside a link could make it read as another address), or a character that quoting
# puts around URLs: < > " ` { } | \ ^. It must not continue a word ("xhttp://" is no link).
_URL = re.compile(
    r"(?<!\w)https?://"
    r"[^\s<>\"`{}|\\^\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]+",
    re.IGNORECASE)

# Punctuation that ends the sentence around a URL far more often than the URL itself.
_TRAILING = frozenset(".,:;!?'*_~")
_BRACKETS = {")": "(", "]": "["}

_LINK = Markup('<a href="{0}" rel="' + REL + '" target="_blank">{0}</a>')


def linkify(text: str) -> Markup:
    """``text`` escaped, with each http(s) URL in it as a link to itself."""
    if "://" not in text:  # no URL: no regular expression over every character
        return escape(text)
    out: list[str] = []
    done = 0
    for match in _URL.finditer(text):
        url = _trim(match.group())
        if not _has_host(url):
            continue
        start = match.start()
        out.append(escape(text[done:start]))
        out.append(_LINK.format(url))
        done = start + len(url)
    out.append(escape(text[done:]))
    return Markup("").join(out)


def _trim(url: str) -> str:
    """``url`` without the sentence punctuation after it, keeping balanced brackets:
    ``(see https://en.wikipedia.org/wiki/Go_(game)).`` links ``…/Go_(game)``."""
    unmatched = {close: url.count(close) - url.count(open_) for close, open_ in _BRACKETS.items()}
    end = len(url)
    while end:
        char = url[end - 1]
        if char in _TRAILING:
            end -= 1
        elif char in unmatched and unmatched[char] > 0:
            unmatched[char] -= 1
            end -= 1
        else:
            break
    return url[:end]


def _has_host(url: str) -> bool:
    try:
        return bool(urlsplit(url).hostname)
    except ValueError:  # e.g. an unclosed IPv6 bracket: "http://[::1"
        return False
