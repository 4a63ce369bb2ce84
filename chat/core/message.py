"""A Message holds one encoded form, its JSON; every wire shape is sliced or joined from it.

The JSON is UTF-8, not ``ensure_ascii``: an emoji costs its four bytes, not twelve. It is still
always one line: ``json.dumps`` escapes every control character, and U+2028/U+2029 (line breaks
to JavaScript) are escaped here, so no text can end an SSE field or frame early. The SSE frame,
its HTTP chunk and the long-poll body are made when written, once per message and write, never
held. Nothing here does I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any, Final

from .ids import format_id, order

# Bytes a held message costs beside its JSON: the object, its id, seq and ts (measured with
# tracemalloc over 10,000 messages: 196 to 212). The history budget counts it.
OVERHEAD: Final = 224

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029]")


def encode(value: Any) -> bytes:
    """Compact one-line UTF-8 JSON, every control character escaped.

    ``json`` escapes C0 controls; DEL, C1 controls and U+2028/U+2029 (line breaks to older
    JavaScript) are escaped here. An unpaired surrogate (which no form lets through) is
    written as JSON's own ``\\udXXX`` escape: Python's ``backslashreplace`` spells it so.
    """
    text = _ENCODER.encode(value)
    data = text.encode("utf-8", "backslashreplace")
    # Looked for in the bytes (a memchr each) before the text is searched character by
    # character: DEL, and the lead bytes of C1 controls (and Latin-1) and of U+2028/U+2029.
    if b"\x7f" in data or b"\xc2" in data or b"\xe2\x80\xa8" in data or b"\xe2\x80\xa9" in data:
        if _UNSAFE.search(text):
            text = _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
            data = text.encode("utf-8", "backslashreplace")
    return data


class Message:
    __slots__ = ("room", "epoch", "seq", "id", "ts", "data")

    def __init__(self, room: str, epoch: str, seq: int, ts: float, data: bytes) -> None:
        self.room = room
        self.epoch = epoch
        self.seq = seq
        self.id = format_id(epoch, seq)
        self.ts = ts
        self.data = data  # the message object as JSON: what every client is sent

    @property
    def size(self) -> int:
        """What holding this message costs, for the history budget."""
        return len(self.data) + OVERHEAD

    @property
    def key(self) -> tuple[int, int]:
        return order(self.epoch, self.seq)

    def as_dict(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.data)
        return value

    @property
    def html(self) -> str:
        html: str = self.as_dict()["html"]
        return html

    def sse(self) -> bytes:
        return b"id: %s\nevent: message\ndata: %s\n\n" % (self.id.encode(), self.data)

    def __repr__(self) -> str:
        return f"<Message {self.id} room={self.room!r}>"


# Renders a message's HTML fragment from (id, body, name, ts); the web layer supplies it.
Renderer = Callable[[str, str, "str | None", float], str]


def make_message(room: str, epoch: str, seq: int, body: str, name: str | None, ts: float,
                 render: Renderer) -> Message:
    message_id = format_id(epoch, seq)
    data = encode({"id": message_id, "room": room, "body": body, "name": name, "ts": ts,
                   "html": render(message_id, body, name, ts)})
    return Message(room, epoch, seq, ts, data)


PING: Final = b": ping\n\n"


def chunk(data: bytes) -> bytes:
    """``data`` framed as one HTTP/1.1 chunk (RFC 9112 section 7.1)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def frames(messages: Iterable[Message]) -> bytes:
    """The SSE frames of ``messages``, joined for one write."""
    return b"".join(m.sse() for m in messages)


def reset_frame(reason: str, base: str) -> bytes:
    """Tells a stream client its cursor was not trusted; ``base`` is a cursor of the new history.

    ``reason`` is one of our own words and ``base`` one of our ids, never client input, so
    nothing here can inject an SSE field.
    """
    return b'id: %s\nevent: reset\ndata: {"reason": "%s"}\n\n' % (base.encode(), reason.encode())


def event_frame(event: str, value: Any) -> bytes:
    """A frame without ``id:``: it never moves a client's cursor (presence, typing)."""
    return b"event: %s\ndata: %s\n\n" % (event.encode(), encode(value))


def poll_body(messages: list[Message], reset: bool) -> bytes:
    """The long-poll reply, joined from each message's JSON."""
    joined = b",".join(m.data for m in messages)
    return b'{"messages":[%s]%s}' % (joined, b',"reset":true' if reset else b"")
