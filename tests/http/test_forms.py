"""Form parsing at the edges: charsets, encodings, control characters; 400 or 415, nothing stored."""

from __future__ import annotations

import gzip

import pytest

from ..support import XSRF, Chat

URLENCODED = "application/x-www-form-urlencoded"


@pytest.fixture
def store_url() -> str:
    """Forms are judged and parsed before a store is asked: one store for this module (conftest
    runs the store's own tests on each)."""
    return "memory"


def _multipart(part_headers: str, value: bytes, boundary: str = "b0und",
               name: str = "body") -> tuple[str, bytes]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n{part_headers}"
            f"\r\n").encode() + value + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def _late_charset_field(charset: bytes) -> tuple[str, bytes]:
    """A form whose second part is a ``_charset_`` field naming ``charset``."""
    return "multipart/form-data; boundary=b0und", (
        b'--b0und\r\nContent-Disposition: form-data; name="body"\r\n\r\nhi\r\n'
        b'--b0und\r\nContent-Disposition: form-data; name="_charset_"\r\n\r\n' + charset
        + b'\r\n--b0und--\r\n')


# Refused with a 415 before a byte of the body is decoded (or read), and the connection closes.
REFUSED: list[tuple[str, str, bytes, dict[str, str], str]] = [
    # (id, Content-Type, body, extra headers, words expected in the error)
    ("unknown-charset", URLENCODED + "; charset=nope", b"body=hi", {}, "unsupported charset"),
    ("binary-codec-charset", URLENCODED + "; charset=base64", b"body=hi", {},
     "unsupported charset"),
    ("punycode", URLENCODED + "; charset=punycode", b"body=" + b"a" * 1000, {},
     "unsupported charset"),
    ("charset-field", URLENCODED, b"_charset_=punycode&body=hi", {}, "unsupported charset"),
    ("gzip", URLENCODED, gzip.compress(b"body=zipped"), {"Content-Encoding": "gzip"},
     "Content-Encoding 'gzip' is not accepted"),
    ("gzip-that-is-not", URLENCODED, b"body=hi", {"Content-Encoding": "gzip"},
     "Content-Encoding"),
    ("deflate-that-is-not", URLENCODED, b"body=hi", {"Content-Encoding": "deflate"},
     "Content-Encoding"),
    ("multipart-unknown-part-charset", *_multipart("Content-Type: text/plain; charset=nope\r\n",
                                                   b"hi"), {}, "unsupported charset"),
    ("multipart-punycode-part", *_multipart("Content-Type: text/plain; charset=punycode\r\n",
                                            b"a" * 1000), {}, "unsupported charset"),
    ("multipart-request-charset", _multipart("", b"hi")[0] + "; charset=punycode",
     _multipart("", b"hi")[1], {}, "unsupported charset"),
    # utf-7 and unicode_escape can spell an unpaired surrogate, which no page could encode.
    ("multipart-charset-field", *_multipart("", b"punycode", name="_charset_"), {},
     "unsupported charset"),
    ("multipart-late-charset-field", *_late_charset_field(b"punycode"), {},
     "unsupported charset"),
    ("utf7", *_multipart("Content-Type: text/plain; charset=utf-7\r\n", b"+2AA-x"), {},
     "unsupported charset"),
    ("unicode-escape", *_multipart("Content-Type: text/plain; charset=unicode_escape\r\n",
                                   b"\\udfff"), {}, "unsupported charset"),
]


@pytest.mark.parametrize("content_type, body, headers, words", [b[1:] for b in REFUSED],
                         ids=[b[0] for b in REFUSED])
async def test_a_charset_or_encoding_not_allowed_is_415_even_with_a_valid_token(
        chat: Chat, content_type: str, body: bytes, headers: dict[str, str], words: str) -> None:
    response = await chat.client.post(
        "/a/message/new", data=body,
        headers={"Content-Type": content_type, "X-XSRFToken": XSRF, **headers})
    assert response.status == 415
    assert words in (await response.json())["error"]
    assert response.headers["Connection"] == "close"
    assert await chat.history() == []
    assert (await chat.post("works"))["body"] == "works"


BAD: list[tuple[str, str, bytes, dict[str, str], str]] = [
    # (id, Content-Type, body, extra headers, words expected in the error)
    ("percent-escaped-invalid-utf8", URLENCODED, b"body=%FF%FE", {}, "not valid UTF-8"),
    ("percent-escaped-surrogate", URLENCODED, b"body=%ED%A0%80", {}, "not valid UTF-8"),
    ("invalid-in-declared-charset", URLENCODED + "; charset=ascii", b"body=%C3%A9", {},
     "not valid ascii"),
    ("undefined-in-windows-1252", URLENCODED + "; charset=windows-1252", b"body=%81", {},
     "not valid windows-1252"),
    ("multipart-unknown-transfer-encoding",
     *_multipart("Content-Transfer-Encoding: rot47\r\n", b"hi"), {}, "malformed form"),
    ("multipart-broken-part-header", *_multipart("no colon here\r\n", b"hi"), {},
     "malformed form"),
    # aiohttp asserts (a 500) on a first part named _charset_ when the boundary is long.
    ("multipart-charset-field-long-boundary", *_multipart("", b"utf-8", "-" * 20 + "x" * 18, "_charset_"),
     {}, "malformed form"),
    ("multipart-file", *_multipart("Content-Type: application/octet-stream\r\n", b"hi"), {},
     "must be text"),
    # aiohttp 3.14's reader takes every part named _charset_ as the RFC 7578 default charset and
    # then misreads the boundary after it: an allowed charset there is a form it cannot read.
    ("multipart-late-charset-field", *_late_charset_field(b"utf-8"), {}, "malformed form"),
    ("nul-in-body", URLENCODED, b"body=a%00b", {}, "control characters"),
    ("escape-in-body", URLENCODED, b"body=%1B%5B2Jgone", {}, "control characters"),
    ("c1-control-in-body", URLENCODED, b"body=a%C2%9Bb", {}, "control characters"),
    ("delete-in-body", URLENCODED, b"body=a%7Fb", {}, "control characters"),
    ("newline-in-name", URLENCODED, b"body=hi&name=a%0Ab", {}, "one line"),
    ("tab-in-name", URLENCODED, b"body=hi&name=a%09b", {}, "one line"),
]


@pytest.mark.parametrize("content_type, body, headers, words", [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
async def test_bad_form_is_400_and_stores_nothing(chat: Chat, content_type: str, body: bytes,
                                                  headers: dict[str, str], words: str) -> None:
    response = await chat.client.post(
        "/a/message/new", data=body,
        headers={"Content-Type": content_type, "X-XSRFToken": XSRF, **headers})
    assert response.status == 400
    assert words in (await response.json())["error"]
    assert await chat.history() == []
    assert (await chat.post("works"))["body"] == "works"


@pytest.mark.parametrize("charset, raw, body", [
    ("latin-1", b"body=caf%E9", "café"),
    ("ISO-8859-1", b"body=caf%E9", "café"),
    ("windows-1252", b"body=%80uro", "€uro"),
    ("utf-8", b"body=caf%C3%A9", "café"),
    ("UTF8", b"body=caf%C3%A9", "café"),
], ids=["latin-1", "iso-8859-1", "windows-1252", "utf-8", "utf8-spelling"])
async def test_a_declared_charset_is_honoured(chat: Chat, charset: str, raw: bytes,
                                              body: str) -> None:
    response = await chat.client.post(
        "/a/message/new", data=raw,
        headers={"Content-Type": f"{URLENCODED}; charset={charset}", "X-XSRFToken": XSRF})
    assert response.status == 200, await response.text()
    assert (await response.json())["body"] == body


@pytest.mark.parametrize("field, raw, body", [
    ("ISO-8859-1", b"body=caf%E9", "café"),
    ("windows-1252", b"body=%80uro", "€uro"),
    ("UTF-8", b"body=caf%C3%A9", "café"),
], ids=["iso-8859-1", "windows-1252", "utf-8"])
async def test_a_charset_field_names_the_charset_of_a_urlencoded_form(
        chat: Chat, field: str, raw: bytes, body: str) -> None:
    """What a form with a hidden _charset_ input sends (HTML): judged, then used, before any
    other field is decoded; the Content-Type's charset, when there is one, wins."""
    response = await chat.client.post(
        "/a/message/new", data=b"_charset_=" + field.encode() + b"&" + raw,
        headers={"Content-Type": URLENCODED, "X-XSRFToken": XSRF})
    assert response.status == 200, await response.text()
    assert (await response.json())["body"] == body


@pytest.mark.parametrize("sent, stored", [
    ("one\r\ntwo", "one\ntwo"),  # what a browser sends for a textarea's line break
    ("one\rtwo\r\n\r\nthree", "one\ntwo\n\nthree"),
    ("\r\n  indented\tand\ttabbed\r\n", "indented\tand\ttabbed"),
    ("\u2028 \u202e rtl \u0301 \ufeff", "\u202e rtl \u0301 \ufeff"),  # format characters stay
], ids=["crlf", "cr", "trim-and-tabs", "unicode-format-chars"])
async def test_line_breaks_become_lf_and_text_is_kept(chat: Chat, sent: str, stored: str) -> None:
    assert (await chat.post(sent))["body"] == stored
    assert (await chat.history())[-1]["body"] == stored


async def test_a_form_is_read_once_for_the_xsrf_check_and_the_handler(chat: Chat) -> None:
    """The XSRF middleware reads the form first; the handler must see the same fields."""
    response = await chat.client.post("/a/message/new",
                                      data={"_xsrf": XSRF, "body": "once", "room": "r1"})
    assert (await response.json())["room"] == "r1"
