"""Who is in a room: members by name, with a grace period, and unnamed connections counted.

A member joins with their first connection (a stream, or a waiting long-poll) and leaves
``grace`` seconds after their last one closed, so a reload or a switch of transport is not a
leave and a join. Unnamed connections are counted while open and never listed. Names beyond
``max_names`` (all rooms of this process) are counted as unnamed: what a client can make the
server remember is bounded.

``Presence`` is this process's view; ``View`` is what one process tells the others (through the
store); ``roster`` merges views into what clients are shown. Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

LISTED = 100  # names a roster lists at most; its count is exact all the same


class View(NamedTuple):
    """One process's members of a room (present or within their grace) and unnamed connections."""

    names: frozenset[str]
    unnamed: int


@dataclasses.dataclass(frozen=True, slots=True)
class Roster:
    count: int
    members: tuple[str, ...]  # sorted, at most LISTED

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "members": list(self.members)}


def roster(views: Iterable[View]) -> Roster:
    names: set[str] = set()
    unnamed = 0
    for view in views:
        names |= view.names
        unnamed += view.unnamed
    return Roster(len(names) + unnamed, tuple(sorted(names)[:LISTED]))


class _Room:
    __slots__ = ("open", "leaving", "unnamed")

    def __init__(self) -> None:
        self.open: dict[str, int] = {}  # name -> open connections
        self.leaving: dict[str, float] = {}  # name -> when its grace ends (no connection open)
        self.unnamed = 0


class Presence:
    def __init__(self, grace: float, max_names: int, clock: Callable[[], float]) -> None:
        self.grace = grace
        self.max_names = max_names
        self.clock = clock
        self._rooms: dict[str, _Room] = {}
        self.names = 0  # named entries held, open or leaving, across rooms

    def join(self, room: str, name: str | None) -> str | None:
        """A connection opened; returns the name it counts under (None: unnamed)."""
        r = self._rooms.get(room)
        if r is None:
            r = self._rooms[room] = _Room()
        if name is not None:
            if name in r.open:
                r.open[name] += 1
                return name
            if r.leaving.pop(name, None) is not None:
                r.open[name] = 1  # back within the grace: no leave, no join
                return name
            if self.names < self.max_names:
                r.open[name] = 1
                self.names += 1
                return name
        r.unnamed += 1
        return None

    def leave(self, room: str, name: str | None) -> None:
        """A connection closed (``name``: what ``join`` returned)."""
        r = self._rooms[room]
        if name is None:
            r.unnamed -= 1
        elif r.open[name] > 1:
            r.open[name] -= 1
        else:
            del r.open[name]
            r.leaving[name] = self.clock() + self.grace
        if not r.open and not r.leaving and not r.unnamed:
            del self._rooms[room]

    def sweep(self) -> set[str]:
        """Members whose grace ran out leave; the rooms that changed."""
        now, changed = self.clock(), set()
        for room, r in list(self._rooms.items()):
            gone = [name for name, until in r.leaving.items() if until <= now]
            for name in gone:
                del r.leaving[name]
            if gone:
                self.names -= len(gone)
                changed.add(room)
                if not r.open and not r.leaving and not r.unnamed:
                    del self._rooms[room]
        return changed

    def view(self, room: str) -> View:
        r = self._rooms.get(room)
        if r is None:
            return View(frozenset(), 0)
        return View(frozenset(r.open) | frozenset(r.leaving), r.unnamed)

    def rooms(self) -> list[str]:
        return list(self._rooms)
