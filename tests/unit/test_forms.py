"""chat.web.forms on its own: urlencoded_pairs gives the same pairs as urllib.parse.parse_qsl
(strict, blanks kept), faster; a message body keeps its line breaks as "\\n", whatever the
browser submitted. (Forms over HTTP: tests/http/test_forms.py.)"""

from __future__ import annotations

import urllib.parse

import pytest
from aiohttp import web
from hypothesis import example, given
from hypothesis import settings as budget
from hypothesis import strategies as st

from chat.settings import Settings
from chat.web import forms
from chat.web.forms import urlencoded_pairs

from ..support import examples

# ---- urlencoded_pairs --------------------------------------------------------------------------

PIECES = ["%", "%4", "%41", "%e2%82%ac", "%F0%9F%98%80", "%zz", "%C3", "+", "=", "&", "\\",
          "\\x41", "%5C", "a", "é", "😀", " "]


def reference(raw: bytes, charset: str) -> object:
    try:
        return urllib.parse.parse_qsl(raw.rstrip().decode(charset), keep_blank_values=True,
                                      encoding=charset, errors="strict", max_num_fields=1000)
    except (UnicodeDecodeError, ValueError) as exc:
        return type(exc)


def parse_urlencoded(raw: bytes, charset: str) -> list[tuple[str, str]]:
    """The pairs decoded strictly in ``charset``, as the form reader decodes them."""
    return [(k.decode(charset), v.decode(charset)) for k, v in urlencoded_pairs(raw)]


def ours(raw: bytes, charset: str) -> object:
    try:
        return parse_urlencoded(raw, charset)
    except (UnicodeDecodeError, ValueError) as exc:
        return type(exc)


@budget(max_examples=examples(500))
@given(text=st.lists(st.sampled_from(PIECES) | st.text(max_size=3), max_size=20).map("".join),
       charset=st.sampled_from(["utf-8", "latin-1", "cp1252"]))
@example(text="a=1&&b=&=c&d", charset="utf-8")
@example(text="b=%%%&c=%4G%41&d=%E2%82%AC", charset="utf-8")  # all-escape look-alikes
@example(text="&" * 999, charset="utf-8")
@example(text="&" * 1000, charset="utf-8")
def test_same_pairs_as_urllib(text: str, charset: str) -> None:
    raw = text.encode("utf-8")
    assert ours(raw, charset) == reference(raw, charset)


@pytest.mark.parametrize("raw, pairs", [
    (b"body=%F0%9F%98%80+%21", [("body", "😀 !")]),
    (b"a=%zz%41", [("a", "%zzA")]),  # a % without two hex digits stays
    (b"a=\\x41", [("a", "\\x41")]),  # a backslash is only a backslash
])
def test_examples(raw: bytes, pairs: list[tuple[str, str]]) -> None:
    assert parse_urlencoded(raw, "utf-8") == pairs


# ---- body: line breaks ------------------------------------------------------------------------

@pytest.mark.parametrize(("sent", "stored"), [
    ("one\r\ntwo", "one\ntwo"),         # what every browser submits for a textarea
    ("one\rtwo\nthree", "one\ntwo\nthree"),
    ("\r\n  hi \r\n\r\n", "hi"),        # trimming still applies
])
def test_line_breaks_become_newlines(sent: str, stored: str) -> None:
    assert forms.body(sent, Settings()) == stored


def test_a_line_break_counts_as_one_character() -> None:
    """A textarea's maxlength counts a line break once; the server must agree with it."""
    settings = Settings(max_body=5)
    assert forms.body("a\r\nb\r\nc", settings) == "a\nb\nc"
    with pytest.raises(web.HTTPBadRequest):
        forms.body("ab\r\ncd\r\nef", settings)
