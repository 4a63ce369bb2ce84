"""RoomBuffer: O(1) cursor lookup, eviction, and every reset reason."""

from __future__ import annotations

import pytest

from chat.buffer import RoomBuffer
from chat.ids import Cursor, format_id, parse_cursor
from chat.message import Message

EPOCH = "abc123"


def message(seq: int) -> Message:
    return Message(EPOCH, (seq,), "main", f"body {seq}", None, 0.0, "<div></div>")


def filled(capacity: int, n: int) -> RoomBuffer:
    buf = RoomBuffer(EPOCH, capacity)
    for seq in range(1, n + 1):
        buf.append(message(seq))
    return buf


def seqs(messages: list[Message]) -> list[int]:
    return [m.pos[0] for m in messages]


def test_empty_buffer() -> None:
    since = RoomBuffer(EPOCH, 5).since(None)
    assert since == ([], None, f"{EPOCH}-0")


@pytest.mark.parametrize("cursor, expected", [
    (0, [1, 2, 3]), (1, [2, 3]), (2, [3]), (3, []),
])
def test_since_inside(cursor: int, expected: list[int]) -> None:
    since = filled(5, 3).since(Cursor(EPOCH, (cursor,)))
    assert (seqs(since.messages), since.reset) == (expected, None)


@pytest.mark.parametrize("n", [5, 9, 10, 11, 23, 1000])
def test_holds_exactly_capacity_newest(n: int) -> None:
    buf = filled(5, n)
    assert seqs(buf.messages()) == list(range(n - 4, n + 1))
    assert buf.oldest == n - 4
    assert len(buf._items) < 10  # eviction deletes in batches, never grows without bound


def test_cursor_just_before_oldest_is_valid_and_older_is_evicted() -> None:
    buf = filled(5, 12)  # holds 8..12
    assert seqs(buf.since(Cursor(EPOCH, (7,))).messages) == [8, 9, 10, 11, 12]
    evicted = buf.since(Cursor(EPOCH, (6,)))
    assert (seqs(evicted.messages), evicted.reset, evicted.base) == (
        [8, 9, 10, 11, 12], "evicted", f"{EPOCH}-7")


@pytest.mark.parametrize("cursor, reason", [
    (Cursor("other", (2,)), "epoch"),
    (Cursor(EPOCH, (4,)), "unknown"),
    (Cursor(EPOCH, (1, 0)), "unknown"),
])
def test_untrusted(cursor: Cursor, reason: str) -> None:
    since = filled(5, 3).since(cursor)
    assert (seqs(since.messages), since.reset, since.base) == ([1, 2, 3], reason, f"{EPOCH}-0")


def test_append_out_of_order_is_a_bug() -> None:
    buf = filled(5, 2)
    with pytest.raises(AssertionError):
        buf.append(message(4))


def test_since_slices_without_scanning() -> None:
    """The lookup indexes by number: a cursor deep in a big buffer costs the same as a shallow one."""
    buf = filled(20_000, 20_000)
    assert seqs(buf.since(Cursor(EPOCH, (19_998,))).messages) == [19_999, 20_000]


@pytest.mark.parametrize("text, parsed", [
    ("abc-1", Cursor("abc", (1,))),
    ("k3v9x0qa2b-1795770403829-0", Cursor("k3v9x0qa2b", (1795770403829, 0))),
    ("ABC-1", None), ("abc", None), ("abc-", None), ("-1", None), ("abc-1-2-3", None),
    ("abc-1\n", None), ("abc-１", None), ("a" * 17 + "-1", None), ("abc-" + "9" * 20, None),
    ("abc-1 ", None), ("abc--1", None),
])
def test_parse_cursor(text: str, parsed: Cursor | None) -> None:
    assert parse_cursor(text) == parsed
    if parsed is not None:
        assert format_id(*parsed) == text
