"""Form parsing at the edges: charsets, encodings, control characters; all 400, nothing stored."""

from __future__ import annotations

import gzip

import pytest

from ..support import XSRF, Chat

URLENCODED = "application/x-www-form-urlencoded"


def _multipart(part_headers: str, value: bytes, boundary: str = "b0und",
               name: str = "body") -> tuple[str, bytes]:
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n{part_headers}"
            f"\r\n").encode() + value + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


BAD: list[tuple[str, str, bytes, dict[str, str], str]] = [
    # (id, Content-Type, body, extra headers, words expected in the error)
    ("unknown-charset", URLENCODED + "; charset=nope", b"body=hi", {}, "unsupported charset"),
    ("binary-codec-charset", URLENCODED + "; charset=base64", b"body=hi", {},
     "unsupported charset"),
    ("percent-escaped-invalid-utf8", URLENCODED, b"body=%FF%FE", {}, "not valid UTF-8"),
    ("percent-escaped-surrogate", URLENCODED, b"body=%ED%A0%80", {}, "not valid UTF-8"),
    ("invalid-in-declared-charset", URLENCODED + "; charset=ascii", b"body=%C3%A9", {},
     "not valid ascii"),
    ("gzip-that-is-not", URLENCODED, b"body=hi", {"Content-Encoding": "gzip"},
     "could not read the request body"),
    ("deflate-that-is-not", URLENCODED, b"body=hi", {"Content-Encoding": "deflate"},
     "could not read the request body"),
    ("multipart-unknown-part-charset", *_multipart("Content-Type: text/plain; charset=nope\r\n",
                                                   b"hi"), {}, "unsupported charset"),
    ("multipart-unknown-transfer-encoding",
     *_multipart("Content-Transfer-Encoding: rot47\r\n", b"hi"), {}, "malformed form"),
    ("multipart-broken-part-header", *_multipart("no colon here\r\n", b"hi"), {},
     "malformed form"),
    # aiohttp asserts (a 500) on a first part named _charset_ when the boundary is long.
    ("multipart-charset-field-long-boundary", *_multipart("", b"utf-8", "-" * 20 + "x" * 18, "_charset_"),
     {}, "malformed form"),
    # utf-7 and unicode_escape can spell an unpaired surrogate, which no page could encode.
    ("utf7-unpaired-surrogate", *_multipart("Content-Type: text/plain; charset=utf-7\r\n",
                                            b"+2AA-x"), {}, "unpaired surrogate"),
    ("unicode-escape-unpaired-surrogate",
     *_multipart("Content-Type: text/plain; charset=unicode_escape\r\n", b"\\udfff"), {},
     "unpaired surrogate"),
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
    if "Content-Encoding" in headers:  # aiohttp cannot read on after a broken body: it closes
        assert response.headers["Connection"] == "close"
    assert await chat.history() == []
    assert (await chat.post("works"))["body"] == "works"


async def test_a_gzipped_form_is_read(chat: Chat) -> None:
    """The Content-Encoding rows above fail for the bad bytes, not for the encoding itself."""
    response = await chat.client.post(
        "/a/message/new", data=gzip.compress(b"body=zipped"),
        headers={"Content-Type": URLENCODED, "Content-Encoding": "gzip", "X-XSRFToken": XSRF})
    assert response.status == 200, await response.text()
    assert (await response.json())["body"] == "zipped"


@pytest.mark.parametrize("charset, raw, body", [
    ("latin-1", b"body=caf%E9", "café"),
    ("utf-8", b"body=caf%C3%A9", "café"),
    ("UTF8", b"body=caf%C3%A9", "café"),
], ids=["latin-1", "utf-8", "utf8-spelling"])
async def test_a_declared_charset_is_honoured(chat: Chat, charset: str, raw: bytes,
                                              body: str) -> None:
    response = await chat.client.post(
        "/a/message/new", data=raw,
        headers={"Content-Type": f"{URLENCODED}; charset={charset}", "X-XSRFToken": XSRF})
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
