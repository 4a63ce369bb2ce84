"""ids: the one grammar, epochs dated by their start, and ``judge``, the one decision on a cursor."""

from __future__ import annotations

import pytest

from chat.core.ids import (
    Cursor,
    Room,
    Verdict,
    empty_base,
    epoch_ms,
    epoch_of,
    format_id,
    judge,
    new_store_id,
    order,
    parse,
)

STORE = "abc123"
T0 = 1_796_000_000_000  # a history began here
EPOCH = epoch_of(STORE, T0)
ROOM = Room(EPOCH, floor=4, last=9)  # holds seq 5..9


def never(since: int, until: int) -> bool:
    return False


def always(since: int, until: int) -> bool:
    return True


def test_an_epoch_is_the_store_and_the_start_in_base_36() -> None:
    assert EPOCH == "abc123" + "mx2k114w" and int("mx2k114w", 36) == T0
    assert len(EPOCH) == 14 and epoch_ms(EPOCH) == T0
    assert epoch_ms("k3v9x0qa2b") == 0  # an older server's epoch has no date
    assert len(new_store_id()) == 6 and new_store_id() != new_store_id()


def test_epochs_of_one_store_sort_by_their_start_then_by_seq() -> None:
    later = epoch_of(STORE, T0 + 1)
    assert order(EPOCH, 10**9) < order(later, 1) < order(later, 2)


@pytest.mark.parametrize("text, cursor", [
    ("abc123mx7rqf5s-17", Cursor("abc123mx7rqf5s", 17)),
    ("a-0", Cursor("a", 0)),
    ("a-017", None),  # another spelling of 17
    ("a-1-0", None),  # two numbers
    ("A-1", None),
    ("a-", None),
    ("-1", None),
    ("a" * 17 + "-1", None),
    ("a-" + "9" * 20, None),
    ("a-١", None),  # int() would take Arabic-Indic digits
])
def test_parse_accepts_exactly_the_one_spelling(text: str, cursor: Cursor | None) -> None:
    assert parse(text) == cursor
    if cursor is not None:
        assert format_id(*cursor) == text


@pytest.mark.parametrize("seq, verdict", [
    (4, Verdict(None, 4)),  # the base: just before the oldest kept
    (5, Verdict(None, 5)),
    (9, Verdict(None, 9)),  # the newest
    (10, Verdict("unknown", 0)),  # never issued
    (3, Verdict("evicted", 0)),
    (0, Verdict("evicted", 0)),
])
def test_a_cursor_of_the_room_history(seq: int, verdict: Verdict) -> None:
    assert judge(format_id(EPOCH, seq), ROOM, STORE, T0 + 5, never) == verdict


@pytest.mark.parametrize("cursor, reason", [
    ("", "malformed"), ("nope", "malformed"), (EPOCH + "-05", "malformed"),
    (epoch_of(STORE, T0 - 1) + "-3", "epoch"),  # an earlier history of this room
    (epoch_of("zzzzzz", T0) + "-3", "epoch"),  # another store (a restart)
    ("k3v9x0qa2b-3", "epoch"),  # an older server's
])
def test_not_of_this_history(cursor: str, reason: str) -> None:
    assert judge(cursor, ROOM, STORE, T0 + 5, never).reason == reason


def test_an_empty_rooms_base_before_its_history_began_starts_it_from_the_first() -> None:
    base = empty_base(STORE, T0 - 1000)
    whole = Room(EPOCH, floor=0, last=9)
    assert judge(base, whole, STORE, T0 + 5, never) == Verdict(None, 0)
    # ...unless a whole history of the room may have come and gone in between,
    assert judge(base, whole, STORE, T0 + 5, always) == Verdict("epoch", 0)
    # or the first messages are gone,
    assert judge(base, ROOM, STORE, T0 + 5, never) == Verdict("evicted", 0)
    # or the history began before the base was handed out (it was not this history's),
    assert judge(empty_base(STORE, T0 + 1), whole, STORE, T0 + 5, never).reason == "epoch"
    # or it is another store's base.
    assert judge(empty_base("zzzzzz", T0 - 1000), whole, STORE, T0 + 5, never).reason == "epoch"


def test_an_empty_rooms_base_while_the_room_is_still_empty() -> None:
    base = empty_base(STORE, T0)
    assert judge(base, Room(None), STORE, T0 + 5, never) == Verdict(None, 0)
    assert judge(base, Room(None), STORE, T0 + 5, always) == Verdict("evicted", 0)
    # A seq other than 0 was never an empty room's base.
    assert judge(format_id(epoch_of(STORE, T0), 1), Room(None), STORE, T0 + 5, never).reason == "epoch"


def test_the_store_is_asked_about_the_right_span() -> None:
    asked: list[tuple[int, int]] = []

    def record(since: int, until: int) -> bool:
        asked.append((since, until))
        return False

    judge(empty_base(STORE, T0 - 1000), Room(EPOCH, 0, 9), STORE, T0 + 5, record)
    judge(empty_base(STORE, T0 - 7), Room(None), STORE, T0 + 5, record)
    assert asked == [(T0 - 1000, T0), (T0 - 7, T0 + 5)]
