"""message: one encoded form, UTF-8 JSON on one line, and the wire shapes made from it."""

from __future__ import annotations

import json

import pytest

from chat.core.message import (
    Message,
    chunk,
    encode,
    event_frame,
    frames,
    make_message,
    poll_body,
    reset_frame,
)


def message(seq: int, body: str = "hi") -> Message:
    return make_message("main", "e", seq, body, "ann", 1.5, lambda i, b, n, t: f"<p>{b}</p>")


@pytest.mark.parametrize("text, wire", [
    ("plain", b'"plain"'),
    ("😀", '"😀"'.encode()),  # four bytes, not a twelve-byte escape pair
    ("é", '"é"'.encode()),
    ("a\nb\r\x00", b'"a\\nb\\r\\u0000"'),
    ("\x7f\x85\x9f", b'"\\u007f\\u0085\\u009f"'),
    ("\u2028\u2029", b'"\\u2028\\u2029"'),
    ("\ud800", b'"\\ud800"'),  # unpaired surrogate: JSON's own escape, still valid UTF-8
    ('"\\', b'"\\"\\\\"'),
])
def test_encode_is_utf8_json_on_one_line(text: str, wire: bytes) -> None:
    assert encode(text) == wire
    assert json.loads(wire) == text


def test_a_message_holds_its_json_and_derives_the_rest() -> None:
    m = message(7, "a < b")
    assert m.id == "e-7" and m.data == (
        b'{"id":"e-7","room":"main","body":"a < b","name":"ann","ts":1.5,"html":"<p>a < b</p>"}')
    assert m.as_dict()["body"] == "a < b" and m.html == "<p>a < b</p>"
    assert m.sse() == b"id: e-7\nevent: message\ndata: " + m.data + b"\n\n"
    assert m.size == len(m.data) + 224


def test_frames_polls_and_chunks_join_the_same_bytes() -> None:
    a, b = message(1), message(2)
    assert frames([a, b]) == a.sse() + b.sse()
    assert poll_body([a, b], False) == b'{"messages":[' + a.data + b"," + b.data + b"]}"
    assert json.loads(poll_body([a], True)) == {"messages": [a.as_dict()], "reset": True}
    assert chunk(b"hello") == b"5\r\nhello\r\n"


def test_control_frames() -> None:
    assert reset_frame("evicted", "e-3") == b'id: e-3\nevent: reset\ndata: {"reason": "evicted"}\n\n'
    assert event_frame("typing", {"name": "a\nb"}) == b'event: typing\ndata: {"name":"a\\nb"}\n\n'
