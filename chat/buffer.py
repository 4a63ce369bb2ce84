"""RoomBuffer: one room's bounded history for the memory store, with O(1) cursor lookup."""

from __future__ import annotations

from typing import NamedTuple

from .ids import Cursor, format_id
from .message import Message


class Since(NamedTuple):
    """What follows a cursor: the messages, and why the cursor was not trusted (None if it was).

    ``base`` is the cursor that stands just before ``messages``: a stream sends it as the reset
    frame's ``id:``, so a client that drops right after a reset resumes without a second reset.
    """

    messages: list[Message]
    reset: str | None
    base: str


class RoomBuffer:
    """The newest ``capacity`` messages of a room, numbered 1, 2, 3... within ``epoch``.

    A message's list index is its number minus ``_first``, so ``since`` slices instead of scanning.
    Eviction deletes in batches of ``capacity`` to keep appends amortised O(1). ``_index`` maps the
    id of every message in ``_items`` to its number, so ``after_id`` needs no parsing.
    """

    __slots__ = ("epoch", "capacity", "_items", "_first", "last", "_index")

    def __init__(self, epoch: str, capacity: int) -> None:
        self.epoch = epoch
        self.capacity = capacity
        self._items: list[Message] = []
        self._first = 1  # number of _items[0]
        self.last = 0  # number of the newest message; 0 while empty
        self._index: dict[str, int] = {}

    def append(self, message: Message) -> None:
        assert message.pos == (self.last + 1,), "messages must be appended in order"
        self._items.append(message)
        self.last += 1
        self._index[message.id] = self.last
        if len(self._items) >= 2 * self.capacity:
            drop = len(self._items) - self.capacity
            for old in self._items[:drop]:
                del self._index[old.id]
            del self._items[:drop]
            self._first += drop

    @property
    def oldest(self) -> int:
        """Number of the oldest message still held (``last + 1`` when none is)."""
        return max(self._first, self.last - self.capacity + 1)

    def messages(self) -> list[Message]:
        return self._items[self.oldest - self._first:]

    def after_id(self, cursor: str) -> Since | None:
        """``since`` for a cursor that is the id of a held message (what a caught-up client sends):
        one dict lookup. None when it is anything else; ``since`` then decides."""
        pos = self._index.get(cursor)
        if pos is None or pos < self.oldest - 1:
            return None
        return Since(self._items[pos + 1 - self._first:], None, cursor)

    def since(self, cursor: Cursor | None) -> Since:
        """Messages after ``cursor`` (all held ones for None), or all held ones with a reset reason."""
        oldest = self.oldest
        if cursor is not None:
            if cursor.epoch != self.epoch:
                reason: str | None = "epoch"
            elif len(cursor.pos) != 1 or cursor.pos[0] > self.last:
                reason = "unknown"
            elif cursor.pos[0] < oldest - 1:
                reason = "evicted"
            else:
                return Since(self._items[cursor.pos[0] + 1 - self._first:], None,
                             format_id(self.epoch, cursor.pos))
        else:
            reason = None
        return Since(self._items[oldest - self._first:], reason, format_id(self.epoch, (oldest - 1,)))
