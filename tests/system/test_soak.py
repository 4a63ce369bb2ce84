"""bench/soak.py in small (20 clients, 8 s) so the script itself is tested; and its delivery
check flags every way a client's messages can go wrong. The full soak is ``make soak``."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

from bench.soak import Client, check_deliveries

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_soak_passes_every_check(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--clients", "20", "--seconds", "8",
         "--rooms", "3", "--rate", "10", "--max-session", "3", "--max-rss-growth-mb", "30",
         "--json", str(out)], capture_output=True, text=True, timeout=50, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = json.loads(out.read_text())
    assert summary["checks"] and all(summary["checks"].values())
    # It really churned: both kinds of client, reconnects, resets of the connection, messages.
    assert summary["streams"] and summary["pollers"]
    assert summary["sessions"] > 2 * summary["clients"]
    assert summary["abrupt_disconnects"] > 0
    assert summary["messages"] >= 60
    # Each client is due its room's messages (a third of them): all but the few posted last.
    assert summary["deliveries_checked"] >= 0.8 * 20 * summary["messages"] / 3
    assert summary["after"]["chat_stream_clients"] == summary["after"]["chat_poll_waiters"] == 0


def _client(received: list[int], resets: int = 0) -> Client:
    c = Client(7, "stream", "r", "e-1", "e", random.Random(0), array("q", received))
    c.resets = resets
    return c


@pytest.mark.parametrize("received, resets, words", [
    ([2, 3, 4, 5], 0, None),
    ([2, 3, 4, 5, 6], 0, None),  # more than due (messages after the run's last): fine, if in order
    ([2, 3, 5], 0, "1 missing"),
    ([2, 3, 4], 0, "1 missing"),  # stopped short of what was due
    ([2, 3, 3, 4, 5], 0, "1 duplicates"),
    ([2, 4, 3, 5], 0, "1 out of order"),
    ([2, 3, 4, 5], 1, "reset"),
], ids=["exact", "more-than-due", "gap", "short", "duplicate", "order", "reset"])
def test_the_delivery_check_flags_what_goes_wrong(received: list[int], resets: int,
                                                  words: str | None) -> None:
    problems = check_deliveries([_client(received, resets)], {"r": [2, 3, 4, 5, 6]}, {"r": 4})
    if words is None:
        assert problems == []
    else:
        assert len(problems) == 1 and words in problems[0], problems
