"""MemoryStore: the embedded default. RAM is all there is: the feed's windows are the store.

Rooms live in this process only. A restart starts a new store id, so every older cursor resets
("epoch"); a message evicted to stay within ``--history`` or ``--history-bytes`` is gone, and a
cursor into it resets ("evicted").
"""

from __future__ import annotations

import secrets
import time

from ..core.history import History
from ..core.idempotency import Ledger, fingerprint
from ..core.ids import Room, epoch_of, new_store_id
from ..core.message import Message, Renderer, make_message
from ..core.presence import View
from .base import KeyConflict, Listener, Posted


class MemoryStore:
    def __init__(self, history: History, render: Renderer, keys: Ledger) -> None:
        self.store_id = new_store_id()
        self.history = history
        self.keys = keys
        self._render = render
        self._listener: Listener | None = None
        self._last_epoch_ms = 0
        self._secret = b""

    connected = True

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def forgot_between(self, since_ms: int, until_ms: int) -> bool:
        return self.history.last_forget_ms >= since_ms

    async def open(self, listener: Listener) -> None:
        self._listener = listener
        self.history.clock_ms = self.now_ms

    async def close(self) -> None:
        pass

    async def healthy(self) -> bool:
        return True

    async def secret(self) -> bytes:
        if not self._secret:
            self._secret = secrets.token_bytes(32)
        return self._secret

    async def publish(self, room: str, body: str, name: str | None,
                      client_key: str | None = None) -> Posted:
        assert self._listener is not None
        print_ = ""
        if client_key is not None:
            print_ = fingerprint(body, name)
            seen = self.keys.get(room, client_key)
            if seen is not None:
                if seen[0] != print_:
                    raise KeyConflict()
                return Posted(seen[1], replayed=True)
        w = self.history.window(room)
        if w is None:
            # A new history: dated after every earlier one, so no old cursor can match it.
            ms = self._last_epoch_ms = max(self.now_ms(), self._last_epoch_ms + 1)
            epoch, seq = epoch_of(self.store_id, ms), 1
        else:
            epoch, seq = w.epoch, w.last + 1
        message = make_message(room, epoch, seq, body, name, time.time(), self._render)
        self._listener.accept(message)
        if client_key is not None:
            self.keys.put(room, client_key, print_, message)
        return Posted(message)

    def _room(self, room: str) -> Room:
        w = self.history.window(room)
        return Room(None) if w is None else Room(w.epoch, w.floor, w.last)

    async def read(self, room: str, after: int | None, limit: int) -> tuple[Room, list[Message]]:
        w = self.history.window(room)
        if w is None:
            return Room(None), []
        if after is None or not w.floor <= after <= w.last:
            return self._room(room), w.newest(limit) if after is None else []
        return self._room(room), w.after(after, limit)

    async def older(self, room: str, epoch: str, before: int,
                    limit: int) -> tuple[Room, list[Message]]:
        w = self.history.window(room)
        if w is None or w.epoch != epoch or not w.floor < before <= w.last + 1:
            return self._room(room), []
        return self._room(room), w.before(before, limit)

    async def watch(self, room: str) -> None:
        pass

    def settled(self, room: str) -> bool:
        return True

    async def recent(self, limit: int) -> list[tuple[str, float]]:
        return []  # every room is in the feed's RAM windows

    async def share(self, room: str, view: View, ttl: float) -> None:
        pass  # one process: nobody to tell

    async def views(self, rooms: list[str]) -> dict[str, list[View]]:
        return {}

    async def typing(self, room: str, name: str, until: float) -> None:
        assert self._listener is not None
        self._listener.typed(room, name, until)
