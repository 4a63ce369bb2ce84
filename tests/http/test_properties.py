"""Properties (hypothesis): any text a form accepts comes back unchanged through every transport,
nothing anyone sends can add an SSE field or break a frame, and no cursor or form is a 500.

The expected results come from small oracles written here from the contract, not from chat/.
Fixed seed and small budgets in make test; ``make fuzz`` runs them longer (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import gzip
import html.parser
import itertools
import json
import string
import unicodedata
import urllib.parse
import zlib
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import event, example, given
from hypothesis import settings as budget
from hypothesis import strategies as st
from multidict import CIMultiDict

from chat.core.ids import Cursor, format_id, parse
from chat.core.message import make_message, poll_body
from chat.settings import Settings
from chat.web.keys import feed_key
from chat.web.stream import opening
from chat.web.templating import message_renderer, setup_templating

from ..support import (
    XSRF,
    Chat,
    examples,
    future_cursor,
    one_store,
    wire_json,
    with_settings,
    wrong_shape_cursor,
    zero_cursor,
)

OPENING = opening(1000)
MAX_BODY, MAX_NAME = 40, 12
SMALL = with_settings(max_body=MAX_BODY, max_name=MAX_NAME, poll_timeout=0.3)
_rooms = itertools.count()


def fresh_room() -> str:
    return f"p{next(_rooms)}"


# ---- oracles --------------------------------------------------------------------------------

_EPOCH_CHARS = set(string.ascii_lowercase + string.digits)


def is_id(text: str) -> bool:
    """The id grammar: ``epoch-seq``; epoch 1-16 of [a-z0-9]; seq is decimal without leading
    zeros, at most 19 digits."""
    epoch, *positions = text.split("-")
    return (0 < len(epoch) <= 16 and set(epoch) <= _EPOCH_CHARS and len(positions) == 1
            and all(0 < len(p) <= 19 and set(p) <= set(string.digits)
                    and (p == "0" or p[0] != "0") for p in positions))


def _controls(text: str, allowed: str = "") -> bool:
    return any(unicodedata.category(c) == "Cc" and c not in allowed for c in text)


def stored_body(text: str) -> str | None:
    """What the server stores for ``text`` as a body, or None when it must refuse it (400)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text or len(text) > MAX_BODY or _controls(text, "\t\n"):
        return None
    return text


REFUSED = object()


def stored_name(text: str | None) -> object:
    """The stored name (None for none), or REFUSED."""
    text = (text or "").strip()
    if len(text) > MAX_NAME or _controls(text):
        return REFUSED
    return text or None


# ---- strategies -----------------------------------------------------------------------------

# Pieces that have broken chat servers, framings and pages before, mixed with arbitrary text.
TRICKY = ["\r", "\n", "\r\n", "\n\n", "\t", " ", "\xa0", "\u2028", "\u2029", "\u200b",
          "\u200f", "\u202e", "\u2066", "\u0301", "\ufeff", "\ufffd", "\uffff", "😀", "👩‍👩‍👧",
          "ﷺ", "<", ">", "&", '"', "'", "\\", "</div>", "<script>alert(1)</script>", "&amp;",
          "&#0;", "]]>", "<!--", "{{ x }}", "%s", "%00", "\ndata: evil\n\n",
          "\r\nevent: reset\r\n", "id: 999\n", ": ping\n\n", "retry: 0\n",
          "https://example.com/a_(b)?c=<d>&e.", "javascript:alert(1)"]
CONTROLS = ["\x00", "\x1b[2J", "\x7f", "\x85", "\x0b", "\x0c", "\x1f", "\x9b"]
# Text a person could type (line breaks and tabs, but no other control character)...
typed = st.lists(st.one_of(
    st.text(st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=6),
    st.sampled_from(TRICKY)), min_size=1, max_size=10).map("".join)
# ...and anything at all but unpaired surrogates (those have their own test).
untyped = st.lists(st.one_of(st.text(max_size=6), st.sampled_from(TRICKY + CONTROLS)),
                   max_size=10).map("".join)
texts = st.one_of(typed, typed, untyped, st.text(min_size=MAX_BODY - 3, max_size=MAX_BODY + 3))
names = st.one_of(st.none(), typed.map(lambda t: t[:MAX_NAME + 1]), untyped)


def valid_ids(epochs: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[str]:
    if epochs is None:
        epochs = st.text(alphabet=sorted(_EPOCH_CHARS), min_size=1, max_size=16)
    return st.builds(format_id, epochs, st.integers(0, 10**19 - 1))


@st.composite
def near_ids(draw: st.DrawFn) -> str:
    """A valid id with something inserted, removed or replaced somewhere."""
    text = draw(valid_ids())
    i = draw(st.integers(0, len(text)))
    j = draw(st.integers(i, min(len(text), i + 2)))
    junk = draw(st.sampled_from(["", "0", "-", "A", " ", "\n", "\x00", "١", "ß", "-0", "00"])
                | st.text(max_size=2))
    return text[:i] + junk + text[j:]


cursors = st.one_of(st.text(), valid_ids(), near_ids())


# ---- cursors: pure ----------------------------------------------------------------------------

@budget(max_examples=examples(200))
@given(epoch=st.text(alphabet=sorted(_EPOCH_CHARS), min_size=1, max_size=16),
       seq=st.integers(0, 10**19 - 1))
def test_format_then_parse_gives_the_cursor_back(epoch: str, seq: int) -> None:
    assert parse(format_id(epoch, seq)) == Cursor(epoch, seq)


@budget(max_examples=examples(200))
@given(text=cursors)
@example("k3v9x0qa2b-17")
@example("k3v9x0qa2b-017")  # leading zero: another spelling of -17, so not an id
@example("k3v9x0qa2b-١٧")  # Arabic-Indic digits: int() would take them
@example("K3V9-1")
@example("k3v9-1\n")
@example("a-1-2-3")
@example("a-" + "9" * 20)
def test_a_cursor_is_accepted_exactly_when_it_is_an_id(text: str) -> None:
    cursor = parse(text)
    assert (cursor is not None) == is_id(text)
    if cursor is not None:  # and it is the one spelling of that position
        assert format_id(*cursor) == text


# ---- SSE framing: pure, for any text at all (surrogates and controls included) ---------------

_renderer_app = web.Application()
setup_templating(_renderer_app, Settings())
render = message_renderer(_renderer_app)
any_text = st.text(st.characters(codec=None)) | texts  # codec=None: unpaired surrogates too


@budget(max_examples=examples(200))
@given(body=any_text, name=st.none() | any_text,
       room=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
       pos=st.integers(1, 10**19 - 1), ts=st.floats(0, 4e9))
def test_a_message_frame_is_three_lines_whatever_the_text(
        body: str, name: str | None, room: str, pos: int, ts: float) -> None:
    message = make_message(room, "k3v9x0qa2b", pos, body, name, ts, render)
    frame = message.sse()
    assert frame.endswith(b"\n\n") and frame.count(b"\n") == 4 and b"\r" not in frame
    id_line, event_line, data_line, _, _ = frame.split(b"\n")
    assert id_line == b"id: k3v9x0qa2b-%d" % pos
    assert event_line == b"event: message"
    assert data_line.startswith(b"data: ")
    # Valid UTF-8 with no control character (an EventSource splits lines on CR and LF) and no
    # U+2028/U+2029 (line breaks to older JavaScript): everything else is the text itself.
    text = data_line.decode("utf-8")
    assert not any(ord(c) < 0x20 or c in "\x7f\u2028\u2029" for c in text)
    data = json.loads(data_line[len(b"data: "):])
    assert data == message.as_dict()
    assert (data["body"], data["name"], data["room"]) == (body, name, room)
    assert json.loads(poll_body([message], False)) == {"messages": [data]}


# ---- any accepted text round-trips over HTTP ---------------------------------------------------

class MessagesOnPage(html.parser.HTMLParser):
    """Each message fragment's tags and the text of its name and body, as a browser shows them.
    Links (``a``, the server's own for http(s) URLs) are part of the body's text, not counted."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.found: dict[str, dict[str, Any]] = {}
        self._current: dict[str, Any] | None = None
        self._field: str | None = None
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "div" and attr.get("class") == "message":
            self._current = self.found[str(attr["id"])] = {"tags": [], "name": "", "body": ""}
        elif self._current is not None and not (tag == "a" and self._field == "body"):
            self._current["tags"].append(tag)
            self._field = attr.get("class") if tag == "span" else None

    def handle_endtag(self, tag: str) -> None:
        if tag == "div":
            self._current = None
        if tag != "a":
            self._field = None

    def handle_data(self, data: str) -> None:
        if self._current is not None and self._field in ("name", "body"):
            self._current[self._field] += data


async def post_form(client: TestClient[Any, Any], fields: dict[str, str],
                    multipart: bool) -> aiohttp.ClientResponse:
    if not multipart:
        return await client.post("/a/message/new", data=fields, allow_redirects=False)
    with aiohttp.MultipartWriter("form-data") as writer:
        for key, value in fields.items():
            part = writer.append(value)
            part.set_content_disposition("form-data", name=key)
    return await client.post("/a/message/new", data=writer, allow_redirects=False)


@pytest.mark.parametrize("settings", [SMALL], ids=["small-limits"])
@budget(max_examples=examples(120))
@given(body=texts, name=names, multipart=st.booleans())
@example(body="a\r\nb\rc\n\n\td", name=" \u202eann ", multipart=True)
@example(body="<b>&amp;</b> \"'", name="</span>", multipart=False)
@example(body="see https://example.com/a_(b)?c=<d>&e. javascript:alert(1)", name=None, multipart=False)
@example(body="\u2028\u2029 \u0301\u200f", name="\ufeff", multipart=False)
async def test_any_accepted_text_comes_back_unchanged_in_json_poll_stream_and_page(
        chat: Chat, body: str, name: str | None, multipart: bool) -> None:
    room = fresh_room()
    fields = {"_xsrf": XSRF, "room": room, "body": body}
    if name is not None:
        fields["name"] = name
    response = await post_form(chat.client, fields, multipart)
    want_body, want_name = stored_body(body), stored_name(name)
    event("refused" if want_body is None or want_name is REFUSED else "accepted")
    if want_body is None or want_name is REFUSED:
        assert response.status == 400, await response.text()
        assert set(await response.json()) == {"error"}
        assert await chat.history(room) == []
        return
    assert response.status == 200, await response.text()
    message = await response.json()
    assert (message["body"], message["name"], message["room"]) == (want_body, want_name, room)
    # The long-poll reply and the stream's data line carry the very same object.
    assert await chat.poll(room=room) == {"messages": [message]}
    async with chat.stream(room=room, last_event_id="earliest") as stream:
        assert await stream.read_bytes(len(OPENING)) == OPENING
        frame = await stream.read_frame()
    assert frame == frame_of(message)
    # The page shows the same text, escaped: parsed back, one fragment with exactly its own tags.
    page = await (await chat.client.get(f"/rooms/{room}")).text()
    assert message["html"] in page
    assert MessagesOnPage(page).found == {f"m{message['id']}": {
        "tags": ["article", "span", "span", "time"], "name": want_name or "anonymous", "body": want_body}}


@one_store
@pytest.mark.parametrize("settings", [SMALL], ids=["small-limits"])
@budget(max_examples=examples(30))
@given(before=st.text(max_size=5), surrogate=st.integers(0xD800, 0xDFFF),
       spelling=st.sampled_from(["percent-escaped-utf-8", "utf-7", "unicode_escape"]))
async def test_an_unpaired_surrogate_is_refused_however_it_is_spelled(
        chat: Chat, before: str, surrogate: int, spelling: str) -> None:
    """No UTF-8 page can show an unpaired surrogate: percent-escaped, it is not UTF-8 (400); a
    charset that can spell one is not allowed (415, before it is decoded)."""
    room = fresh_room()
    text = before + chr(surrogate)
    headers = {"X-XSRFToken": XSRF}
    if spelling == "percent-escaped-utf-8":
        data = b"room=%s&body=%s" % (room.encode(), urllib.parse.quote(
            text.encode("utf-8", "surrogatepass")).encode())
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    else:
        data = (b'--b\r\nContent-Disposition: form-data; name="body"\r\nContent-Type: text/plain; '
                b"charset=%s\r\n\r\n%s\r\n--b\r\nContent-Disposition: form-data; name=\"room\""
                b"\r\n\r\n%s\r\n--b--\r\n") % (spelling.encode(), text.encode(spelling),
                                               room.encode())
        headers["Content-Type"] = "multipart/form-data; boundary=b"
    response = await chat.client.post("/a/message/new", data=data, headers=headers)
    assert response.status == (400 if spelling == "percent-escaped-utf-8" else 415)
    assert set(await response.json()) == {"error"}
    assert await chat.history(room) == []


# ---- any cursor: a resume, or a reset that never echoes it; never a 500 ------------------------
# A room holding one message, ``first`` (seq 1); the cursor before it has seq 0. Cursors of its
# epoch are drawn from those two, the ones beyond it (never issued), a two-number shape and
# another spelling; any other text is foreign.

def _split(cursor: str) -> tuple[str, int]:
    epoch, seq = cursor.split("-")
    return epoch, int(seq)


def _reset(reason: str, first_id: str) -> bytes:
    return b'id: %s\nevent: reset\ndata: {"reason": "%s"}\n\n' % (
        zero_cursor(first_id).encode(), reason.encode())


def verdict(cursor: str, first_id: str) -> str:
    """What the contract says a cursor means for the room: "resume" (from before ``first``),
    "newest" (nothing to send yet), or the reason of the reset."""
    if not is_id(cursor):
        return "malformed"
    epoch, positions = _split(cursor)
    first_epoch, first = _split(first_id)
    if epoch != first_epoch:
        return "epoch"
    if positions == 0:
        return "resume"
    if positions == first:
        return "newest"
    assert positions > first, "not drawn"
    return "unknown"


def expected_stream_start(cursor: str | None, first: dict[str, Any]) -> bytes:
    """What a stream of the room sends before any new message."""
    if not cursor:
        return OPENING
    if cursor == "earliest":
        return OPENING + frame_of(first)
    meaning = verdict(cursor, first["id"])
    if meaning == "newest":
        return OPENING
    if meaning == "resume":
        return OPENING + frame_of(first)
    return OPENING + _reset(meaning, first["id"]) + frame_of(first)


def frame_of(message: dict[str, Any]) -> bytes:
    """The contract's frame for ``message`` (as POST returned it)."""
    return b"id: %s\nevent: message\ndata: %s\n\n" % (message["id"].encode(), wire_json(message))


def our_ids(first_id: str) -> st.SearchStrategy[str]:
    """Cursors of the room's epoch: before its message, at it, beyond it, or in a wrong shape."""
    head, _, last = first_id.rpartition("-")
    epoch, seq = _split(first_id)
    beyond = st.integers(1, 10**6).map(lambda k: format_id(epoch, seq + k))
    return st.one_of(st.sampled_from([
        zero_cursor(first_id), first_id, future_cursor(first_id), wrong_shape_cursor(first_id),
        f"{head}-0{last}", ""]), beyond)


header_safe = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


@budget(max_examples=examples(100))
@given(data=st.data(), in_header=st.booleans())
async def test_any_cursor_resumes_or_resets_and_is_never_echoed(chat: Chat, data: st.DataObject,
                                                                in_header: bool) -> None:
    room = fresh_room()
    first = await chat.post("first", room=room)
    cursor = data.draw(st.one_of(our_ids(first["id"]), our_ids(first["id"]), st.just("earliest"),
                                 header_safe if in_header else cursors), label="cursor")
    zero = zero_cursor(first["id"])
    if in_header:  # the header wins over the query, and HTTP strips its surrounding blanks
        stream = chat.stream(room=room, last_event_id=zero, headers={"Last-Event-ID": cursor})
        sent: str | None = cursor.strip(" \t") or zero
    else:
        stream = chat.stream(room=room, last_event_id=cursor)
        sent = cursor
    want = expected_stream_start(sent, first)
    event("reset" if b"event: reset" in want else "resume" if want != OPENING else "live only")
    async with stream:
        assert stream.response is not None and stream.response.status == 200
        assert await stream.read_bytes(len(want), timeout=2) == want
        # Nothing else came in between: the next bytes are the next message's frame.
        live = await chat.post("live", room=room)
        assert await stream.read_frame(timeout=2) == frame_of(live)


@budget(max_examples=examples(100))
@given(data=st.data())
async def test_any_long_poll_cursor_gets_the_news_or_a_reset(chat: Chat,
                                                             data: st.DataObject) -> None:
    room = fresh_room()
    first = await chat.post("first", room=room)
    cursor = data.draw(st.one_of(our_ids(first["id"]), our_ids(first["id"]), cursors),
                       label="cursor")
    meaning = verdict(cursor, first["id"]) if cursor else "resume"
    event(meaning)
    if meaning == "newest":  # waits for the next message
        waiting = asyncio.create_task(chat.poll(room=room, cursor=cursor))
        await chat.until_metric("chat_poll_waiters", 1)
        second = await chat.post("second", room=room)
        assert await asyncio.wait_for(waiting, 2) == {"messages": [second]}
    elif meaning == "resume":
        assert await chat.poll(room=room, cursor=cursor) == {"messages": [first]}
    else:
        assert await chat.poll(room=room, cursor=cursor) == {"messages": [first], "reset": True}


# ---- any form: never a 500, and stored only when accepted -------------------------------------

FIELD_NAMES = ["body", "name", "room", "_xsrf", "next", "cursor", "", "BODY", "body[]", "_charset_"]
field_values = st.one_of(texts, st.sampled_from([XSRF, "main", "/", "//evil", "x" * 70,
                                                 "UTF-8", "ISO-8859-1", "punycode", "utf-7"]))
charsets = st.one_of(st.none(), st.sampled_from([
    None, "utf-8", "UTF8", "latin-1", "ascii", "utf-16", "utf-7", "unicode_escape", "cp1252",
    "nope", "base64", "", '"utf-8"', "punycode", "windows-1252", "ISO-8859-1", "idna",
    "utf-32"]))
# Request headers around the form: a Content-Encoding (refused, 415), Fetch Metadata and Origin
# (a cross-site one refused, 403), and X-Forwarded-For in one or two lines (no effect here: the
# test client is not a trusted proxy).
codings = st.sampled_from([None] * 6 + ["gzip", "deflate", "identity", "br", "x-junk"])
sites = st.sampled_from([None] * 3 + ["same-origin", "same-site", "none", "cross-site"])
origins = st.sampled_from([None] * 3 + ["self", "http://evil.example", "null"])
forwarded = st.lists(st.sampled_from(["1.2.3.4", "::1, 10.0.0.1", "junk", ""]), max_size=2)


@st.composite
def form_requests(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    """A form to /a/message/new or /updates: often a good one with odd fields added, else junk."""
    fields = []
    if draw(st.booleans()):
        fields += [("_xsrf", XSRF), ("body", draw(typed))]
        for key, values in (("room", ["main", "r-1", "no room", "r" * 65]),
                            ("next", ["/", "/rooms/main", "//evil", "http://x/"])):
            if draw(st.booleans()):
                fields.append((key, draw(st.sampled_from(values))))
    fields += draw(st.lists(st.tuples(st.sampled_from(FIELD_NAMES) | st.text(max_size=6),
                                      field_values), max_size=4))
    fields = draw(st.permutations(fields))
    charset = draw(charsets)
    encode_as = charset or "utf-8"
    if draw(st.booleans()):
        boundary = draw(st.sampled_from(["b", "----x", "a" * 70, "a b", "=", "é"]))
        parts = []
        for key, value in fields:
            head = f'Content-Disposition: form-data; name="{key}"\r\n'
            if charset is not None:
                head += f"Content-Type: text/plain; charset={charset}\r\n"
            parts.append(f"--{boundary}\r\n{head}\r\n".encode("utf-8", "surrogatepass")
                         + _encode(value, encode_as) + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        content_type = f'multipart/form-data; boundary="{boundary}"'
    else:
        body = b"&".join(
            urllib.parse.quote_plus(_encode(k, encode_as)).encode() + b"="
            + urllib.parse.quote_plus(_encode(v, encode_as)).encode() for k, v in fields)
        content_type = "application/x-www-form-urlencoded"
        if charset is not None:
            content_type += f"; charset={charset}"
    headers = {"Content-Type": content_type}
    coding = draw(codings)
    if coding is not None:
        headers["Content-Encoding"] = coding
        body = gzip.compress(body) if coding == "gzip" else \
            zlib.compress(body) if coding == "deflate" else body
    for name, choice in (("Sec-Fetch-Site", draw(sites)), ("Origin", draw(origins))):
        if choice is not None:
            headers[name] = choice
    return draw(st.sampled_from(["/a/message/new", "/a/message/updates"])), body, headers


def _encode(text: str, charset: str) -> bytes:
    try:
        return text.encode(charset)
    except (LookupError, UnicodeError):
        return text.encode("utf-8", "surrogatepass")


@one_store
@pytest.mark.parametrize("settings", [SMALL], ids=["small-limits"])
@budget(max_examples=examples(200))
@given(request=form_requests(), lines=forwarded)
async def test_any_form_is_answered_without_a_500_and_stored_only_when_accepted(
        chat: Chat, request: tuple[str, bytes, dict[str, str]],
        lines: list[str]) -> None:
    path, body, headers = request
    hub = chat.client.app[feed_key].hub
    before = hub.published
    if headers.get("Origin") == "self":
        headers = {**headers, "Origin": str(chat.client.make_url("/")).rstrip("/")}
    sent = list(headers.items()) + [("X-Forwarded-For", line) for line in lines]
    response = await chat.client.post(path, data=body, headers=CIMultiDict(sent),
                                      allow_redirects=False)
    assert response.status in (200, 302, 400, 403, 404, 413, 415), await response.text()
    coding = headers.get("Content-Encoding", "identity")
    cross = headers.get("Sec-Fetch-Site") == "cross-site" or \
        headers.get("Origin") in ("http://evil.example", "null")
    if coding != "identity":  # refused before the body is read, whatever else it carries
        assert response.status == 415 and "Content-Encoding" in (await response.json())["error"]
        assert response.headers["Connection"] == "close"
    elif cross:  # refused before the body is read, whatever its charset
        assert response.status == 403
    elif response.status == 415:  # only a charset outside the allow-list, in any of its places
        assert "unsupported charset" in (await response.json())["error"]
    event(f"415 {coding}" if coding != "identity" else "cross-site" if cross else "same-site")
    stored = path == "/a/message/new" and response.status in (200, 302)
    event(f"{path} {response.status}")
    assert hub.published == before + stored
    if response.status >= 400:
        assert set(await response.json()) == {"error"}
