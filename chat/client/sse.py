"""An incremental ``text/event-stream`` parser (WHATWG HTML, "Server-sent events", 9.2.6).

Bytes go in as they arrive, in pieces of any size; an event comes out only once its frame has
ended with a blank line. A frame cut off by a dropped connection therefore never counts, not even
its ``id:`` line: the cursor may only move past a message the program actually received.
"""

from __future__ import annotations

import dataclasses
import re

_EOL = re.compile(rb"\r\n|\r|\n")
_DIGITS = re.compile(r"[0-9]+")
_BOM = b"\xef\xbb\xbf"


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One complete frame: its ``event:`` type ("message" when it has none), its ``data:`` lines
    joined by newlines, and its own ``id:`` (None when the frame has no ``id:`` line)."""

    type: str
    data: str
    id: str | None


class SSEParser:
    """Feed it the body's bytes; it returns the events whose frames are complete.

    ``retry`` is the newest ``retry:`` value (milliseconds), or None until the server sends one.
    A line longer than ``max_line`` bytes raises ValueError rather than growing without bound.
    """

    def __init__(self, max_line: int = 4 * 1024 * 1024) -> None:
        self.retry: int | None = None
        self._max_line = max_line
        self._buffer = b""
        self._started = False
        self._type = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        buffer = self._buffer + chunk
        if not self._started:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._buffer = buffer  # maybe the start of a byte order mark: wait for more
                return []
            self._started = True
            if buffer.startswith(_BOM):
                buffer = buffer[len(_BOM):]
        events: list[Event] = []
        start = 0
        for eol in _EOL.finditer(buffer):
            if eol.group() == b"\r" and eol.end() == len(buffer):
                break  # a CR at the end may be the first half of a CRLF: wait for the next byte
            event = self._line(buffer[start:eol.start()].decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
            start = eol.end()
        self._buffer = buffer[start:]
        if len(self._buffer) > self._max_line:
            raise ValueError(f"an event-stream line longer than {self._max_line} bytes")
        return events

    def _line(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: heartbeats and the stream's opening
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id":
            if "\x00" not in value:
                self._id = value
        elif name == "retry":
            if _DIGITS.fullmatch(value):
                self.retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        event = Event(self._type or "message", "\n".join(self._data), self._id) if self._data else None
        self._type, self._data, self._id = "", [], None
        return event
