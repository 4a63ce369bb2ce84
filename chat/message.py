"""The Message and every wire encoding of it, each made once when the message is accepted.

Fan-out only ever copies these bytes to sockets: no per-client formatting. ``json.dumps`` escapes
every control character and (with ``ensure_ascii``) U+2028/U+2029, so the JSON is always one line
and a body can never inject an SSE field or end a frame early.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .ids import format_id


class Message:
    __slots__ = ("id", "pos", "epoch", "room", "body", "name", "ts", "html",
                 "json", "sse", "sse_chunk", "poll_body")

    def __init__(self, epoch: str, pos: tuple[int, ...], room: str, body: str,
                 name: str | None, ts: float, html: str) -> None:
        self.epoch = epoch
        self.pos = pos
        self.id = format_id(epoch, pos)
        self.room = room
        self.body = body
        self.name = name
        self.ts = ts
        self.html = html
        self.json: bytes = json.dumps(self.as_dict(), separators=(",", ":")).encode()
        self.sse: bytes = b"id: %s\nevent: message\ndata: %s\n\n" % (self.id.encode(), self.json)
        # The same frame as one HTTP/1.1 chunk, so it can go straight to a chunked response's socket.
        self.sse_chunk: bytes = chunk(self.sse)
        self.poll_body: bytes = b'{"messages":[%s]}' % self.json

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "room": self.room, "body": self.body, "name": self.name,
                "ts": self.ts, "html": self.html}

    def after(self, epoch: str, pos: tuple[int, ...]) -> bool:
        """Is this message newer than the position ``pos`` of ``epoch``?"""
        return self.epoch != epoch or self.pos > pos

    def __repr__(self) -> str:
        return f"<Message {self.id} room={self.room!r}>"


# Renders a message's HTML fragment from (id, body, name, ts); the web layer supplies it.
Renderer = Callable[[str, str, "str | None", float], str]


def make_message(epoch: str, pos: tuple[int, ...], room: str, body: str,
                 name: str | None, ts: float, render: Renderer) -> Message:
    html = render(format_id(epoch, pos), body, name, ts)
    return Message(epoch, pos, room, body, name, ts, html)


def chunk(data: bytes) -> bytes:
    """``data`` framed as one HTTP/1.1 chunk (RFC 9112 section 7.1)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def poll_body(messages: list[Message], reset: bool) -> bytes:
    """The long-poll reply, joined from each message's ready JSON."""
    if len(messages) == 1 and not reset:
        return messages[0].poll_body
    joined = b",".join(m.json for m in messages)
    return b'{"messages":[%s]%s}' % (joined, b',"reset":true' if reset else b"")
