"""chat.linkify: http(s) URLs become links to themselves; everything else stays escaped text."""

from __future__ import annotations

import html
import re

import pytest
from markupsafe import Markup, escape

from chat.web.linkify import REL, linkify

from ..support import Chat, one_store

LINK = re.compile(r'<a href="([^"]*)" rel="([^"]*)" target="_blank">([^<]*)</a>')


def links(text: str) -> list[str]:
    """The URLs ``linkify`` linked, unescaped; each link's text is its href."""
    found = []
    for href, rel, shown in LINK.findall(linkify(text)):
        assert rel == REL and shown == href
        found.append(html.unescape(href))
    return found


def as_text(markup: str) -> str:
    """What a reader sees: the markup without tags, entities decoded."""
    return html.unescape(re.sub(r"<[^>]*>", "", markup))


@pytest.mark.parametrize(("text", "linked"), [
    ("see https://example.com", ["https://example.com"]),
    ("http://example.com/a?b=1&c=2#d", ["http://example.com/a?b=1&c=2#d"]),
    ("HTTPS://EXAMPLE.COM/X", ["HTTPS://EXAMPLE.COM/X"]),
    ("two: http://a.example and https://b.example/", ["http://a.example", "https://b.example/"]),
    ("line one\nhttps://example.com\nline three", ["https://example.com"]),
    ("http://127.0.0.1:8888/rooms/main", ["http://127.0.0.1:8888/rooms/main"]),
    ("http://[::1]:8080/x", ["http://[::1]:8080/x"]),
])
def test_http_and_https_urls_become_links(text: str, linked: list[str]) -> None:
    assert links(text) == linked
    assert as_text(linkify(text)) == text  # nothing added, nothing lost


@pytest.mark.parametrize(("text", "linked"), [
    ("Look: https://example.com.", "https://example.com"),
    ("https://example.com/path, and more", "https://example.com/path"),
    ("really?! https://example.com/?!", "https://example.com/"),
    ("'https://example.com/quoted'", "https://example.com/quoted"),
    ("(see https://example.com/a)", "https://example.com/a"),
    ("(see https://en.wikipedia.org/wiki/Go_(game)).", "https://en.wikipedia.org/wiki/Go_(game)"),
    ("https://en.wikipedia.org/wiki/Go_(game)", "https://en.wikipedia.org/wiki/Go_(game)"),
    ("[https://example.com/list]", "https://example.com/list"),
    ("https://example.com/a_b_", "https://example.com/a_b"),
    ("https://example.com/a.b.c...", "https://example.com/a.b.c"),
])
def test_trailing_punctuation_stays_outside_the_link(text: str, linked: str) -> None:
    assert links(text) == [linked]
    assert as_text(linkify(text)) == text


@pytest.mark.parametrize("text", [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(document.cookie)",
    "java\nscript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "ftp://example.com/file",
    "file:///etc/passwd",
    "//evil.example/protocol-relative",
    "www.example.com",
    "http://",
    "https:// example.com",
    "http://:80/no-host",
    "http://[::1",
    "xhttp://example.com",
    "mailto:someone@example.com",
])
def test_other_schemes_and_non_urls_stay_text(text: str) -> None:
    assert linkify(text) == escape(text)
    assert "<a" not in linkify(text)


def test_javascript_inside_a_url_is_only_ever_text_or_an_http_href() -> None:
    text = 'javascript:alert(1)//http://example.com/" onclick="alert(2)'
    out = linkify(text)
    assert links(text) == ["http://example.com/"]
    assert 'href="javascript' not in out.lower()
    assert "onclick=" in out and 'onclick="' not in out  # the quote is escaped, so no attribute
    assert as_text(out) == text


@pytest.mark.parametrize("text", [
    'https://example.com/"><script>alert(1)</script>',
    "https://example.com/'onmouseover='alert(1)",
    "https://example.com/&lt;already-escaped&gt;",
    "<b>https://example.com</b>",
    'https://example.com/"quoted"',
    "https://example.com/`backtick`",
])
def test_markup_in_and_around_urls_is_escaped(text: str) -> None:
    out = linkify(text)
    assert isinstance(out, Markup)
    assert as_text(out) == text
    # The only tags are our links; no attribute value can be closed early.
    assert re.sub(LINK, "", out).count("<") == 0
    for href in links(text):
        assert '"' not in href and "<" not in href and ">" not in href


def test_every_character_outside_links_is_escaped_once() -> None:
    text = "a < b && c > d \"e\" 'f'"
    assert linkify(text) == escape(text)
    assert linkify("&amp;") == "&amp;amp;"


@pytest.mark.parametrize(("text", "linked"), [
    ("https://bücher.example/straße?q=日本", "https://bücher.example/straße?q=日本"),
    ("مرحبا https://example.com/مرحبا!", "https://example.com/مرحبا"),
    ("https://xn--bcher-kva.example/", "https://xn--bcher-kva.example/"),
    ("emoji https://example.com/😀 ok", "https://example.com/😀"),
    ("nbsp https://example.com/a\u00a0b", "https://example.com/a"),
    ("ideographic https://example.com/a\u3000b", "https://example.com/a"),
])
def test_unicode_urls(text: str, linked: str) -> None:
    assert links(text) == [linked]
    assert as_text(linkify(text)) == text


@pytest.mark.parametrize("invisible", ["\u202e", "\u2066", "\u200b", "\u200f", "\ufeff", "\u0000", "\x85"])
def test_invisible_and_control_characters_end_a_link(invisible: str) -> None:
    """A bidi override inside a link could make it read as another address."""
    text = f"https://example.com/a{invisible}moc.live"
    assert links(text) == ["https://example.com/a"]
    assert as_text(linkify(text)) == text


@pytest.mark.parametrize("text", [
    "a" * 100_000,
    "http://" + "a" * 100_000,
    "http://x/" + "." * 100_000,
    "http://x/" + ")" * 100_000,
    "(" * 50_000 + "http://x/" + ")" * 50_000,
    "http:/" * 30_000,
    "http://" * 30_000,
    "https://x.example/ " * 10_000,
    "h" + "ttp://" * 20_000,
    "\u202e" * 100_000,
])
def test_hostile_long_input_is_handled_in_one_pass(text: str) -> None:
    """Each case is linear by construction (no nested repetition to backtrack into); a
    quadratic or exponential version would not finish these within the suite's timeout."""
    out = linkify(text)
    assert as_text(out) == text
    for href in set(links(text)):
        assert href in text


def test_a_thousand_links() -> None:
    text = " ".join(f"https://example.com/{n}" for n in range(1000))
    assert links(text) == [f"https://example.com/{n}" for n in range(1000)]


# ---- the message fragment: rendered once on the server, the same in the JSON and the page ----

@one_store
async def test_the_message_fragment_links_isolates_and_names_its_zone(chat: Chat) -> None:
    posted = await chat.post("read https://example.com/a?b=1&c=2. not javascript:alert(1)",
                             name="\u202eann")
    fragment = posted["html"]
    assert fragment.startswith(f'<div class="message" id="m{posted["id"]}">')  # the contract's shape
    assert ('<a href="https://example.com/a?b=1&amp;c=2" rel="noopener noreferrer nofollow ugc" '
            'target="_blank">https://example.com/a?b=1&amp;c=2</a>.') in fragment
    assert fragment.count("<a ") == 1 and "javascript:alert(1)" in fragment
    assert '<span class="name" dir="auto">\u202eann</span>' in fragment
    assert '<span class="body" dir="auto">' in fragment
    # Without script the page shows these bytes: the time says which zone it is in.
    assert re.search(r'<time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d UTC">\d\d:\d\d UTC</time>',
                     fragment)
    page = await (await chat.client.get("/")).text()
    assert fragment in page
