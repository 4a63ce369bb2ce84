"""Ledger: the memory store's recent keys, bounded by time and by the bytes they pin."""

from __future__ import annotations

from chat.core.idempotency import Ledger, fingerprint
from chat.core.message import Message, make_message


def message(seq: int) -> Message:
    return make_message("main", "e", seq, "x" * 100, None, 0.0, lambda *_: "")


def test_fingerprint_tells_body_and_name_apart() -> None:
    prints = {fingerprint("a", None), fingerprint("a", ""), fingerprint("a", "b"),
              fingerprint("ab", None), fingerprint("a\x00", None)}
    assert len(prints) == 5 and fingerprint("a", "b") == fingerprint("a", "b")


def test_a_key_is_remembered_for_its_window_then_forgotten() -> None:
    now = [0.0]
    ledger = Ledger(300, 1 << 30, clock=lambda: now[0])
    first = message(1)
    ledger.put("main", "k", "p", first)
    now[0] = 299.9
    assert ledger.get("main", "k") == ("p", first)
    assert ledger.get("other", "k") is None
    now[0] = 300.0
    assert ledger.get("main", "k") is None and len(ledger) == 0 and ledger.bytes == 0


def test_past_its_bytes_the_oldest_keys_go_first() -> None:
    size = message(1).size
    ledger = Ledger(300, 3 * size, clock=lambda: 0.0)
    for seq in range(1, 6):
        ledger.put("main", f"k{seq}", "p", message(seq))
    assert [ledger.get("main", f"k{s}") is not None for s in range(1, 6)] == [
        False, False, True, True, True]
    assert ledger.bytes == 3 * size
