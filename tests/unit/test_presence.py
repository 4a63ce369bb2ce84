"""core.presence: members with a grace period, unnamed connections counted, names bounded; and
chat.presence.Rooms, its once-a-second round: views shared with the store, rosters sent to the
room's streams once per change (on a fake clock and a store in RAM)."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from chat.core.hub import Hub
from chat.core.presence import LISTED, Presence, Roster, View, roster
from chat.presence import Rooms
from chat.stores.base import Store

from ..support import FakeClock


def test_a_member_stays_for_the_grace_after_the_last_connection() -> None:
    now = [0.0]
    p = Presence(grace=15, max_names=100, clock=lambda: now[0])
    assert p.join("r", "alice") == "alice"
    assert p.join("r", "alice") == "alice"  # a second tab
    p.leave("r", "alice")
    assert p.view("r") == View(frozenset({"alice"}), 0)
    p.leave("r", "alice")  # the last one: leaving, but within the grace
    now[0] = 14.9
    assert p.sweep() == set() and p.view("r").names == {"alice"}
    now[0] = 15.0
    assert p.sweep() == {"r"} and p.view("r") == View(frozenset(), 0)
    assert p.rooms() == [] and p.names == 0


def test_coming_back_within_the_grace_is_no_leave_and_no_join() -> None:
    now = [0.0]
    p = Presence(grace=15, max_names=100, clock=lambda: now[0])
    p.join("r", "bob")
    p.leave("r", "bob")
    now[0] = 10
    p.join("r", "bob")  # a reload
    now[0] = 100
    assert p.sweep() == set() and p.view("r").names == {"bob"}


def test_unnamed_connections_are_counted_while_open_and_never_listed() -> None:
    p = Presence(grace=15, max_names=100, clock=lambda: 0.0)
    assert p.join("r", None) is None
    p.join("r", None)
    p.join("r", "carol")
    assert roster([p.view("r")]) == Roster(3, ("carol",))
    p.leave("r", None)
    assert p.view("r").unnamed == 1


def test_names_beyond_the_bound_are_counted_as_unnamed() -> None:
    p = Presence(grace=15, max_names=2, clock=lambda: 0.0)
    assert [p.join("r", n) for n in ("a", "b", "c")] == ["a", "b", None]
    assert p.join("other", "d") is None
    assert roster([p.view("r")]) == Roster(3, ("a", "b"))
    assert p.names == 2


def test_a_roster_merges_processes_and_lists_at_most_100_names() -> None:
    here = View(frozenset({"a", "b"}), 1)
    there = View(frozenset({"b", "c"}), 2)
    assert roster([here, there]) == Roster(6, ("a", "b", "c"))
    many = View(frozenset(f"n{i:03}" for i in range(150)), 0)
    big = roster([many])
    assert big.count == 150 and len(big.members) == LISTED == 100
    assert list(big.members) == sorted(big.members)
    assert big.as_dict() == {"count": 150, "members": list(big.members)}


# ---- Rooms: the round ------------------------------------------------------------------------

class Stream:
    """A stream's transport (and protocol): records what the hub writes to it."""

    writing_paused = False

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> object:
        return None

    def rosters(self) -> list[dict[str, Any]]:
        """Every presence frame written so far (the frames are sent unchunked here)."""
        frames = bytes(self.data).split(b"\n\n")
        return [json.loads(f.split(b"data: ", 1)[1]) for f in frames
                if f.startswith(b"event: presence\n")]


class Shared:
    """What Rooms asks of a store: this process's views as shared, the others' as set."""

    def __init__(self) -> None:
        self.shared: list[tuple[str, View, float]] = []
        self.others: dict[str, list[View]] = {}

    async def share(self, room: str, view: View, ttl: float) -> None:
        self.shared.append((room, view, ttl))

    async def views(self, rooms: list[str]) -> dict[str, list[View]]:
        return {room: self.others.get(room, []) for room in rooms}


def rooms_on(store: Shared, clock: FakeClock) -> tuple[Rooms, Stream]:
    """Rooms (grace 15 s, renewal every 5 s) with one stream watching room r."""
    hub = Hub(queue_size=10)
    stream = Stream()
    sub = hub.subscribe("r", cast(asyncio.WriteTransport, stream), stream, chunked=False)
    sub.direct = True
    return Rooms(cast(Store, store), hub, grace=15, max_names=100, typing_seconds=5, renew=5,
                 clock=clock), stream


async def test_a_round_shares_the_view_and_sends_each_roster_once() -> None:
    store, clock = Shared(), FakeClock()
    rooms, stream = rooms_on(store, clock)
    rooms.join("r", "ann")
    await rooms.round()
    assert stream.rosters() == [{"count": 1, "members": ["ann"]}]
    assert store.shared == [("r", View(frozenset({"ann"}), 0), 15)]  # kept for 3 renewals
    await rooms.round()
    assert len(stream.rosters()) == 1  # nothing changed: no frame
    rooms.leave("r", "ann")
    clock.advance(14.9)
    await rooms.round()
    assert len(stream.rosters()) == 1  # within the grace: still here
    clock.advance(0.1)
    await rooms.round()
    assert stream.rosters()[-1] == {"count": 0, "members": []}
    assert store.shared[-1] == ("r", View(frozenset(), 0), 15)


async def test_other_processes_views_are_merged_when_they_say_so() -> None:
    store, clock = Shared(), FakeClock()
    rooms, stream = rooms_on(store, clock)
    rooms.join("r", "ann")
    await rooms.round()
    store.others["r"] = [View(frozenset({"bob"}), 2)]
    await rooms.round()
    assert len(stream.rosters()) == 1  # not asked again before a notice or a renewal
    rooms.changed("r")  # the store's notice: another process's view of r changed
    await rooms.round()
    assert stream.rosters()[-1] == {"count": 4, "members": ["ann", "bob"]}


async def test_views_are_renewed_every_renew_seconds_of_the_clock() -> None:
    store, clock = Shared(), FakeClock()
    rooms, _ = rooms_on(store, clock)
    rooms.join("r", "ann")
    await rooms.round()
    shared = len(store.shared)
    clock.advance(4.9)
    await rooms.round()
    assert len(store.shared) == shared  # unchanged and not yet due
    clock.advance(0.1)
    await rooms.round()
    assert len(store.shared) == shared + 1 and store.shared[-1][0] == "r"
