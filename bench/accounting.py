"""Turn raw arrivals into the numbers of a run: loss, duplicates, order, latency. Pure functions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Delivery:
    expected: int
    delivered: int  # unique (subscriber, message) pairs that arrived
    lost: int
    duplicates: int
    out_of_order: int
    unknown: int  # ids that no post of ours returned (another publisher in the room?)
    latencies: list[float]  # seconds, post to arrival, one per unique delivery, sorted
    last_arrival: list[float]  # per message: post to its arrival at the last subscriber to get it
    first_sent: float
    last_seen: float  # perf_counter of the last arrival (first_sent if none)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values; None when empty."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def account(arrivals: Sequence[tuple[Sequence[bytes], Sequence[float]]],
            sent: dict[bytes, tuple[int, float]], messages: int) -> Delivery:
    """Count what each subscriber got against what was posted.

    ``arrivals``: per subscriber, the ids it received and when (perf_counter seconds).
    ``sent``: id -> (sequence number 0..messages-1, perf_counter when its POST was written).
    A subscriber should see every message once, in order; what it missed is lost.
    """
    latencies: list[float] = []
    last = [0.0] * messages
    got = [0] * messages
    dup = ooo = unknown = 0
    last_seen = min((t for _, t in sent.values()), default=0.0)
    first_sent = last_seen
    for ids, times in arrivals:
        seen: set[int] = set()
        prev = -1
        for key, t in zip(ids, times, strict=True):
            info = sent.get(key)
            if info is None:
                unknown += 1
                continue
            seq, t_sent = info
            if seq in seen:
                dup += 1
                continue
            seen.add(seq)
            if seq < prev:
                ooo += 1
            prev = seq
            lat = t - t_sent
            latencies.append(lat)
            got[seq] += 1
            if lat > last[seq]:
                last[seq] = lat
            if t > last_seen:
                last_seen = t
    latencies.sort()
    expected = len(arrivals) * messages
    delivered = len(latencies)
    return Delivery(expected, delivered, expected - delivered, dup, ooo, unknown, latencies,
                    [last[i] for i in range(messages) if got[i]], first_sent, last_seen)
