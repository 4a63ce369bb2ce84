"""logfmt values: client text can be logged, but cannot add a key or a line."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.core import logfmt

_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^ "]+)')


@pytest.mark.parametrize("value, shown", [
    ("127.0.0.1", "127.0.0.1"),
    ("2001:db8::/64", "2001:db8::/64"),
    ("/a/message/new", "/a/message/new"),
    ("1.2.3.4 status=200 user=root", '"1.2.3.4 status=200 user=root"'),
    ('a"b', '"a\\"b"'),
    ("a\\b", '"a\\\\b"'),
    ("line\nevent=forged", '"line\\nevent=forged"'),
    ("", '""'),
    ("\x1b[2J", '"\\u001b[2J"'),
])
def test_values(value: str, shown: str) -> None:
    assert logfmt.value(value) == shown


@given(st.text())
def test_any_text_is_one_value_on_one_line(text: str) -> None:
    line = logfmt.line(event="refused", client=text, status=429)
    assert "\n" not in line and "\r" not in line
    pairs = _PAIR.findall(line)
    assert [key for key, _ in pairs] == ["event", "client", "status"]
    assert " ".join(f"{k}={v}" for k, v in pairs) == line
