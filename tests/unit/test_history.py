"""History: windows answer by slicing, stay within a count and a byte budget, and never run
ahead of what the store handed over."""

from __future__ import annotations

import pytest

from chat.core.history import ROOM_OVERHEAD, History, Window
from chat.core.message import Message, make_message

EPOCH = "abc123mx2k114w"
LATER = "abc123mx2k114x"


def message(seq: int, room: str = "main", epoch: str = EPOCH, body: str = "") -> Message:
    return make_message(room, epoch, seq, body or f"body {seq}", None, 0.0, lambda *_: "")


def seqs(messages: list[Message]) -> list[int]:
    return [m.seq for m in messages]


def filled(n: int, per_room: int = 5, budget: int = 1 << 30, **kw: bool) -> History:
    history = History(per_room, budget, authoritative=kw.get("authoritative", True))
    for seq in range(1, n + 1):
        assert history.append(message(seq))
    return history


def window(history: History, room: str = "main") -> Window:
    w = history.window(room)
    assert w is not None
    return w


def test_a_window_holds_floor_to_last_and_slices() -> None:
    w = window(filled(3))
    assert (w.epoch, w.floor, w.last, len(w), w.complete) == (EPOCH, 0, 3, 3, True)
    assert [w.covers(EPOCH, s) for s in range(5)] == [True, True, True, True, False]
    assert not w.covers(LATER, 1)
    assert seqs(w.after(0, 10)) == [1, 2, 3] and seqs(w.after(1, 1)) == [2]
    assert seqs(w.after(3, 10)) == []
    assert seqs(w.newest(2)) == [2, 3] and seqs(w.newest(10)) == [1, 2, 3]
    assert seqs(w.before(3, 10)) == [1, 2] and seqs(w.before(4, 2)) == [2, 3]
    assert seqs(w.before(1, 10)) == []


def test_per_room_count_evicts_the_oldest() -> None:
    history = filled(12, per_room=5)
    w = window(history)
    assert (w.floor, w.last, seqs(w.newest(10))) == (7, 12, [8, 9, 10, 11, 12])
    assert seqs(w.after(7, 10)) == [8, 9, 10, 11, 12]
    assert w.complete  # the memory store: what RAM lost is lost, the window is all there is


def test_eviction_in_a_cache_makes_a_window_incomplete() -> None:
    history = filled(6, per_room=5, authoritative=False)
    assert not window(history).complete  # the store still has seq 1


def test_a_message_held_already_is_skipped() -> None:
    history = filled(3)
    assert not history.append(message(2)) and not history.append(message(3))
    assert window(history).last == 3


def test_a_new_history_or_a_gap_starts_the_window_afresh() -> None:
    history = filled(3)
    assert history.append(message(1, epoch=LATER))
    w = window(history)
    assert (w.epoch, w.floor, w.last) == (LATER, 0, 1)
    assert history.append(message(5, epoch=LATER))  # 2..4 never came: nothing is assumed
    w = window(history)
    assert (w.floor, w.last, w.complete) == (4, 5, True)  # authoritative: RAM is the store
    cache = filled(0, authoritative=False)
    cache.append(message(7))
    assert not window(cache).complete  # a cache that starts at 7 lacks 1..6


def test_bytes_are_counted_and_given_back() -> None:
    history = History(3, 1 << 30, authoritative=True)
    sizes = []
    for seq in range(1, 6):
        m = message(seq)
        sizes.append(m.size)
        history.append(m)
    assert history.bytes == ROOM_OVERHEAD + sum(sizes[2:])
    history.drop("main")
    assert history.bytes == 0 and len(history) == 0


def test_over_budget_the_least_recently_active_room_loses_its_oldest_first() -> None:
    one = message(1).size
    history = History(100, 6 * one + 2 * ROOM_OVERHEAD, authoritative=True)
    for seq in range(1, 4):
        history.append(message(seq, room="old"))
    for seq in range(1, 4):
        history.append(message(seq, room="new"))
    assert history.bytes <= history.budget and len(history) == 2
    history.append(message(4, room="new"))  # over: "old" (least recently active) pays
    assert seqs(window(history, "old").newest(9)) == [2, 3]
    assert seqs(window(history, "new").newest(9)) == [1, 2, 3, 4]
    history.append(message(5, room="new"))
    history.append(message(6, room="new"))
    # "old" is empty now and nobody watches it: forgotten, and the time is noted.
    assert history.window("old") is None and len(history) == 1
    assert history.bytes <= history.budget


def test_a_watched_room_left_empty_is_kept_with_its_position() -> None:
    one = message(1).size
    history = History(100, 3 * one + 2 * ROOM_OVERHEAD, authoritative=True,
                      watched=lambda room: room == "old", clock_ms=lambda: 1234)
    history.append(message(1, room="old"))
    for seq in range(1, 4):
        history.append(message(seq, room="new"))
    w = window(history, "old")
    assert (len(w), w.floor, w.last) == (0, 1, 1)  # a cursor at 1 still resumes here
    assert history.last_forget_ms == 0


def test_forgetting_notes_when() -> None:
    one = message(1).size
    history = History(100, 2 * one + ROOM_OVERHEAD * 2, authoritative=True,
                      clock_ms=lambda: 777)
    history.append(message(1, room="a"))
    generation = history.generation
    for seq in range(1, 3):
        history.append(message(seq, room="b"))
    assert history.window("a") is None
    assert history.last_forget_ms == 777 and history.generation > generation


def test_prime_adds_only_older_messages_without_a_gap() -> None:
    history = History(10, 1 << 30, authoritative=False)
    history.open("main", EPOCH, 7)  # a store starts handing over after seq 7
    stored = [message(s) for s in range(3, 9)]  # the store already has 8: it is not added
    history.prime("main", EPOCH, stored, last=8, floor=2, create=False)
    w = window(history)
    assert (w.floor, w.last, w.complete, seqs(w.after(2, 10))) == (2, 7, True, [3, 4, 5, 6, 7])
    assert history.append(message(8))  # the store hands 8 over: it is new to the window


def test_prime_respects_the_count_and_leaves_a_gap_alone() -> None:
    history = History(3, 1 << 30, authoritative=False)
    history.open("main", EPOCH, 7)
    history.prime("main", EPOCH, [message(s) for s in range(1, 8)], last=7, floor=0,
                  create=False)
    w = window(history)
    assert (w.floor, seqs(w.after(w.floor, 9)), w.complete) == (4, [5, 6, 7], False)
    gap = History(3, 1 << 30, authoritative=False)
    gap.open("main", EPOCH, 9)
    gap.prime("main", EPOCH, [message(s) for s in range(1, 8)], last=7, floor=0, create=False)
    assert len(window(gap)) == 0  # 8 and 9 are missing in between: nothing joins


def test_prime_starts_a_window_only_when_told_nothing_is_on_its_way() -> None:
    history = History(5, 1 << 30, authoritative=False)
    stored = [message(s) for s in range(1, 4)]
    history.prime("main", EPOCH, stored, last=3, floor=0, create=False)
    assert history.window("main") is None
    history.prime("main", EPOCH, stored, last=3, floor=0, create=True)
    w = window(history)
    assert (w.floor, w.last, w.complete) == (0, 3, True)


def test_trim_follows_the_stores_retention() -> None:
    history = filled(6, per_room=10, authoritative=False)
    history.trim("main", 4)
    w = window(history)
    assert (w.floor, seqs(w.newest(10)), w.complete) == (4, [5, 6], True)


def test_trim_below_a_short_window_leaves_it_incomplete() -> None:
    """RAM holds 8..10 of a store that keeps 5..10 after the trim: older ones are still kept."""
    history = filled(10, per_room=3, authoritative=False)
    history.trim("main", 4)
    w = window(history)
    assert (w.floor, seqs(w.newest(10)), w.complete) == (7, [8, 9, 10], False)


@pytest.mark.parametrize("n", [1, 63, 64, 65, 200, 1000])
def test_evicting_one_by_one_keeps_slices_right(n: int) -> None:
    history = filled(n + 50, per_room=50)
    w = window(history)
    assert seqs(w.newest(50)) == list(range(n + 1, n + 51))
    assert seqs(w.after(n + 10, 5)) == list(range(n + 11, n + 16))
