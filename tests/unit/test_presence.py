"""core.presence: members with a grace period, unnamed connections counted, names bounded."""

from __future__ import annotations

from chat.core.presence import LISTED, Presence, Roster, View, roster


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
