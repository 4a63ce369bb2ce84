"""Message bodies keep their line breaks as "\\n", whatever the browser submitted."""

from __future__ import annotations

import pytest
from aiohttp import web

from chat.settings import Settings
from chat.web import forms


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
