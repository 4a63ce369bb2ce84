"""Presence and typing for the rooms this process serves: who is here, shared with the other
processes through the store, and sent to every stream of the room as frames without ``id:``.

- ``join``/``leave`` count a stream or a waiting long-poll (``chat.core.presence``).
- Once a second (``run``) members whose grace ran out leave, this process's changed views are
  shared with the store, the other processes' views of the rooms watched here are read, and a
  room whose roster changed gets one ``event: presence`` frame: at most one a second per room.
- ``typing`` relays through the store to every process; each stream of the room gets an
  ``event: typing`` frame.

Presence and typing frames never carry ``id:``: they are never stored and never move a cursor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .core.hub import Hub
from .core.message import event_frame
from .core.presence import Presence, Roster, View, roster
from .stores.base import Store, StoreUnavailable

log = logging.getLogger(__name__)


class Rooms:
    def __init__(self, store: Store, hub: Hub, *, grace: float, max_names: int,
                 typing_seconds: float, renew: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.hub = hub
        # Seconds between renewals of this process's shared views; the store drops a view not
        # renewed for three periods, so a killed process's members leave within that.
        self.renew = renew
        self.local = Presence(grace, max_names, clock)
        self.typing_seconds = typing_seconds
        self._remote: dict[str, list[View]] = {}  # other processes' views, rooms watched here
        self._sent: dict[str, Roster] = {}  # the roster the room's streams were sent last
        self._dirty: set[str] = set()  # rooms whose local view changed since it was shared
        self._shared: set[str] = set()  # rooms this process has a view of in the store
        self._stale: set[str] = set()  # rooms another process said changed
        self._renewed = 0.0
        self.closing = False  # set at shutdown, before run() is cancelled

    # ---- connections --------------------------------------------------------------------

    def join(self, room: str, name: str | None) -> str | None:
        counted = self.local.join(room, name)
        self._dirty.add(room)
        return counted

    def leave(self, room: str, name: str | None) -> None:
        self.local.leave(room, name)
        if name is None:
            self._dirty.add(room)  # named ones leave when their grace runs out (sweep)

    def roster(self, room: str) -> Roster:
        return roster([self.local.view(room), *self._remote.get(room, ())])

    def present(self) -> set[str]:
        """The rooms with anyone in them that this process knows of (its own connections and
        members within their grace, and other processes' views of the rooms watched here)."""
        return set(self.local.rooms()) | {room for room, views in self._remote.items()
                                          if any(v.names or v.unnamed for v in views)}

    def frame(self, room: str) -> bytes:
        """The roster as a stream frame (no ``id:``)."""
        return event_frame("presence", self.roster(room).as_dict())

    async def lookup(self, rooms: list[str]) -> dict[str, Roster]:
        """The rosters of any rooms, watched here or not (``GET /a/presence``, the room list):
        the other processes' views of the rooms not watched here come from the store, in one
        call for them all."""
        elsewhere = [room for room in rooms
                     if room not in self._remote and not self.hub.watching(room)]
        views = await self.store.views(elsewhere) if elsewhere else {}
        return {room: roster([self.local.view(room), *views.get(room, ())])
                if room in elsewhere else self.roster(room) for room in rooms}

    # ---- typing -----------------------------------------------------------------------------

    async def typing(self, room: str, name: str) -> None:
        await self.store.typing(room, name, round(time.time() + self.typing_seconds, 3))

    def typed(self, room: str, name: str, until: float) -> None:
        """From the store: someone is typing in ``room`` (on this process or another)."""
        self.hub.broadcast(room, event_frame("typing", {"name": name, "until": until}))

    def changed(self, room: str) -> None:
        """From the store: another process's view of ``room`` changed."""
        if self.hub.watching(room):
            self._stale.add(room)

    # ---- the once-a-second round ------------------------------------------------------------

    async def run(self, tick: float = 1.0) -> None:
        # Ends at closing as well as on cancel: redis-py can swallow a cancellation that lands
        # inside a command (see RedisStore.close).
        while not self.closing:
            await asyncio.sleep(tick)
            try:
                await self.round()
            except StoreUnavailable as exc:  # the next round tries again
                log.warning("presence: %s", exc)

    async def round(self) -> None:
        self._dirty |= self.local.sweep()
        now = self.local.clock()
        renew = now - self._renewed >= self.renew
        if renew:
            self._renewed = now
        share = self._dirty | (self._shared if renew else set())
        self._dirty = set()
        for room in share:
            view = self.local.view(room)
            await self.store.share(room, view, 3 * self.renew)
            if view.names or view.unnamed:
                self._shared.add(room)
            else:
                self._shared.discard(room)
        watched = self.hub.rooms()
        for room in list(self._remote):
            if room not in watched:
                del self._remote[room]
        fetch = [r for r in watched if r not in self._remote or r in self._stale or renew]
        self._stale.clear()
        if fetch:
            self._remote.update(await self.store.views(fetch))
            for room in fetch:
                self._remote.setdefault(room, [])
        # A roster can change only where this process's view changed (shared now) or another
        # process's was read again: only those rooms are looked at, not every watched one.
        for room in share.union(fetch):
            current = self.roster(room)
            if self._sent.get(room) != current:
                self._sent[room] = current
                self.hub.broadcast(room, event_frame("presence", current.as_dict()))
        for room in list(self._sent):
            if room not in watched:
                del self._sent[room]
