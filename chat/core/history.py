"""The recent messages of each room held in RAM, within a per-room count and a process-wide budget.

A ``Window`` holds every message of one history of a room with ``floor < seq <= last``, oldest
first, so a cursor inside it is answered by slicing, without a lookup in the store. For the
memory store the windows are the whole store; for SQLite and Redis they are the hot part, fed
by the store as messages are accepted (or read by this process's Redis reader), and a cursor
older than a window is read from the store.

``History`` keeps the windows in order of activity. Over ``budget`` bytes the least recently
active rooms lose their oldest messages first, and a room left empty that nobody here watches
is forgotten entirely. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .ids import order
from .message import Message

# What an empty window costs beside its messages (object, list, dict entry), for the budget.
ROOM_OVERHEAD = 480


class Window:
    """One room's messages ``floor < seq <= last`` of ``epoch``.

    ``complete``: nothing older than ``floor`` exists in the store either (always so for the
    memory store), so a page view needs nothing but this window.
    """

    __slots__ = ("room", "epoch", "floor", "complete", "bytes", "_items", "_start")

    def __init__(self, room: str, epoch: str, floor: int, complete: bool) -> None:
        self.room = room
        self.epoch = epoch
        self.floor = floor
        self.complete = complete
        self.bytes = 0
        self._items: list[Message | None] = []
        self._start = 0  # _items[_start:] are held; evicting only moves _start, in O(1)

    def __len__(self) -> int:
        return len(self._items) - self._start

    @property
    def last(self) -> int:
        return self.floor + len(self)

    @property
    def key(self) -> tuple[int, int]:
        """Sort key of the newest position this window has seen."""
        return order(self.epoch, self.last)

    def covers(self, epoch: str, seq: int) -> bool:
        return epoch == self.epoch and self.floor <= seq <= self.last

    def after(self, seq: int, limit: int) -> list[Message]:
        """The first ``limit`` messages after ``seq`` (which ``covers``)."""
        i = self._start + seq - self.floor
        return self._items[i:i + limit]  # type: ignore[return-value]

    def newest(self, limit: int) -> list[Message]:
        return self._items[max(self._start, len(self._items) - limit):]  # type: ignore[return-value]

    def before(self, seq: int, limit: int) -> list[Message]:
        """Up to ``limit`` messages just before ``seq`` (``floor < seq <= last + 1``), oldest first."""
        end = self._start + seq - 1 - self.floor
        return self._items[max(self._start, end - limit):end]  # type: ignore[return-value]

    def append(self, message: Message) -> None:
        self._items.append(message)
        self.bytes += message.size

    def pop_oldest(self) -> Message:
        message = self._items[self._start]
        assert message is not None
        self._items[self._start] = None  # freed now, not when the list is compacted
        self._start += 1
        self.floor += 1
        self.bytes -= message.size
        if self._start >= 64 and self._start * 2 >= len(self._items):
            del self._items[:self._start]
            self._start = 0
        return message

    def prepend(self, older: list[Message]) -> None:
        """Messages ending at ``floor``, contiguous, oldest first."""
        self._items[:self._start] = older
        self._start = 0
        self.floor -= len(older)
        self.bytes += sum(m.size for m in older)


class History:
    """Every room's window, least recently active first, within ``per_room`` messages each and
    ``budget`` bytes in all.

    ``authoritative``: the windows are the store itself (the memory store). Evicting from them
    then loses messages for good, so a window stays ``complete``; otherwise an evicted message
    is still in the store and the window is no longer complete.
    """

    def __init__(self, per_room: int, budget: int, *, authoritative: bool,
                 watched: Callable[[str], bool] = lambda room: False,
                 clock_ms: Callable[[], int] = lambda: 0) -> None:
        self.per_room = per_room
        self.budget = budget
        self.authoritative = authoritative
        self.watched = watched
        self.clock_ms = clock_ms
        self._windows: dict[str, Window] = {}
        self.bytes = 0
        # Incremented whenever a window is dropped or forgotten: a read that began before cannot
        # prime a window from what it saw (a message accepted meanwhile would be missing).
        self.generation = 0
        self.last_forget_ms = 0  # when a room was last forgotten to stay within the budget

    def __len__(self) -> int:
        return len(self._windows)

    def __iter__(self) -> Iterator[Window]:
        return iter(self._windows.values())

    def window(self, room: str) -> Window | None:
        return self._windows.get(room)

    def append(self, message: Message) -> bool:
        """Hold a message the store accepted; False if held already (the caller then skips it).

        A message of a new history, or one after a gap, starts the room's window afresh.
        """
        room = message.room
        w = self._windows.pop(room, None)  # re-inserted last: the most recently active room
        if w is not None and w.epoch == message.epoch:
            if message.seq <= w.last:
                self._windows[room] = w
                return False
            if message.seq != w.last + 1:
                self._release(w)
                w = None
        elif w is not None:
            self._release(w)
            w = None
        if w is None:
            w = Window(room, message.epoch, message.seq - 1,
                       self.authoritative or message.seq == 1)
            self.bytes += ROOM_OVERHEAD
        self._windows[room] = w
        message.room = w.room  # one string per room, shared by all its messages
        w.append(message)
        self.bytes += message.size
        if len(w) > self.per_room:
            self._pop(w)
        if self.bytes > self.budget:
            self._evict()
        return True

    def open(self, room: str, epoch: str, last: int) -> Window:
        """An empty window at ``last`` (a store starts feeding the room here), unless one exists."""
        w = self._windows.get(room)
        if w is None or w.epoch != epoch:
            if w is not None:
                self._release(w)
            w = self._windows[room] = Window(room, epoch, last, self.authoritative or last == 0)
            self.bytes += ROOM_OVERHEAD
        return w

    def prime(self, room: str, epoch: str, messages: list[Message], last: int, floor: int, *,
              create: bool) -> None:
        """Add what a store read (``messages``: its newest, contiguous, ending at ``last``; its
        oldest kept seq is ``floor + 1``) to the room's window, before what the window holds.

        A window never runs ahead of what the store has handed over (``append``): its newest
        position is what this process's clients have been sent. So a read only adds older
        messages, and starts a window only when the caller knows that nothing of the room is
        on its way (``create``).
        """
        w = self._windows.get(room)
        if w is None:
            if not create:
                return
            w = self.open(room, epoch, last)
        if w.epoch != epoch or last < w.floor or w.complete:
            return
        room_left = self.per_room - len(w)
        older = [m for m in messages if m.seq <= w.floor][-room_left:] if room_left > 0 else []
        if older and older[-1].seq == w.floor:
            for m in older:
                m.room = w.room
            w.prepend(older)
            self.bytes += sum(m.size for m in older)
        if w.floor <= floor:
            w.complete = True
        if self.bytes > self.budget:
            self._evict()

    def trim(self, room: str, floor: int) -> None:
        """The store no longer keeps messages up to ``floor`` (retention): neither does RAM."""
        w = self._windows.get(room)
        if w is not None:
            while len(w) and w.floor < floor:
                self._pop(w)
            # Complete only if the window now reaches down to what the store keeps; a window
            # that starts above the store's floor still has older messages in the store.
            w.complete = w.floor <= floor

    def drop(self, room: str) -> None:
        """Stop holding ``room`` (the store stopped feeding it)."""
        w = self._windows.pop(room, None)
        if w is not None:
            self._release(w)

    def _pop(self, w: Window) -> None:
        self.bytes -= w.pop_oldest().size
        if not self.authoritative:
            w.complete = False

    def _release(self, w: Window) -> None:
        self.bytes -= w.bytes + ROOM_OVERHEAD
        self.generation += 1

    def _evict(self) -> None:
        """Least recently active rooms first: their oldest messages, then the rooms themselves
        when empty and watched by nobody here."""
        for room in list(self._windows):
            if self.bytes <= self.budget:
                return
            w = self._windows[room]
            while len(w) and self.bytes > self.budget:
                self._pop(w)
            if not len(w) and not self.watched(room):
                del self._windows[room]
                self._release(w)
                self.last_forget_ms = self.clock_ms()
