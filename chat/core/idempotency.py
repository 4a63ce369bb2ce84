"""Idempotency keys: what a key stored, remembered for a while, so a retried post is stored once.

A client names each message it composes with a key (``client_key``, ``Idempotency-Key``) and
sends the same key on every retry. The memory store keeps a ``Ledger`` of recent keys (the
Redis store keeps them in Redis, SQLite in its file). Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

from .message import Message


def fingerprint(body: str, name: str | None) -> str:
    """What a retry must repeat to be the same message: its body and name."""
    text = body + "\x00" + (name if name is not None else "\x00")
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Ledger:
    """(room, key) -> (fingerprint, the message stored), for ``window`` seconds, least recent
    first; past ``max_bytes`` of messages held the oldest keys are forgotten early."""

    def __init__(self, window: float, max_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.max_bytes = max_bytes
        self.clock = clock
        self._keys: OrderedDict[tuple[str, str], tuple[float, str, Message]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, room: str, key: str) -> tuple[str, Message] | None:
        self._expire()
        found = self._keys.get((room, key))
        return None if found is None else (found[1], found[2])

    def put(self, room: str, key: str, print_: str, message: Message) -> None:
        self._keys[(room, key)] = (self.clock() + self.window, print_, message)
        self.bytes += message.size
        self._expire()

    def _expire(self) -> None:
        keys, now = self._keys, self.clock()
        while keys:
            expires, _, message = next(iter(keys.values()))
            if expires > now and self.bytes <= self.max_bytes:
                return
            keys.popitem(last=False)
            self.bytes -= message.size
