"""Capped, jittered, exponential delays between attempts, reset by a success."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """``next()`` is ``min(cap, base * 2**n)`` times a random factor in [0.5, 1), n counting the
    failures since the last ``reset()``. The jitter spreads clients that lost the server together,
    so they do not all come back in the same instant; the cap bounds how long a recovered server
    waits for them."""

    def __init__(self, base: float = 0.5, cap: float = 30.0,
                 rand: Callable[[], float] = random.random) -> None:
        if base < 0 or cap < 0:
            raise ValueError("base and cap must not be negative")
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rand = rand

    def next(self) -> float:
        delay = min(self.cap, self.base * 2.0 ** min(self.failures, 64)) * (0.5 + self._rand() / 2)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
