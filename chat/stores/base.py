"""The Store protocol every backend keeps, and what it tells its listener (the feed).

A store keeps rooms' histories and numbers their messages (``chat.core.ids``). It hands every
message it accepts, or (Redis) reads from other processes, to its listener exactly once, in
order, after the message is stored: the listener puts it in RAM (``chat.core.history``) and
in front of this process's clients (``chat.core.hub``). Reads the RAM window cannot answer come
to ``read``. The rule that puts those together without a gap or a duplicate lives in
``chat.feed``, not here.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from ..core.ids import Room
from ..core.message import Message
from ..core.presence import View


class StoreUnavailable(Exception):
    """The backend cannot be reached or cannot write now; nothing was stored (503). At start-up:
    the store cannot be used (one line, exit status 1)."""


class StoreInUse(StoreUnavailable):
    """At start-up: another process owns the store (a SQLite file); exit status 2."""


class Posted(NamedTuple):
    message: Message
    # True when ``client_key`` named a message stored before: this is that message, and
    # nothing was stored now.
    replayed: bool = False


class KeyConflict(Exception):
    """The ``client_key`` was used in this room for another message body (422)."""

    def __init__(self) -> None:
        super().__init__("this client_key (Idempotency-Key) was used in this room for another "
                         "message; a retry must send the same body and name, a new message a "
                         "new key")


class Listener(Protocol):
    """The feed, as a store sees it."""

    def accept(self, message: Message) -> None:
        """A message the store has stored; called in order, once per message."""

    def forget(self, room: str) -> None:
        """The store stops handing over ``room``'s messages (what RAM holds of it goes stale)."""

    def start(self, room: str, epoch: str, last: int) -> None:
        """The store hands over ``room``'s messages from now on, after seq ``last`` of ``epoch``."""

    def trim(self, room: str, floor: int) -> None:
        """The store no longer keeps ``room``'s messages up to seq ``floor`` (retention)."""

    def watching(self, room: str) -> bool:
        """Does a client here follow ``room`` (a stream or a waiting long-poll)?"""

    def typed(self, room: str, name: str, until: float) -> None:
        """Someone is typing in ``room`` (through this process or another) until ``until``."""

    def changed(self, room: str) -> None:
        """Another process's presence in ``room`` changed."""


class Store(Protocol):
    store_id: str  # the first six characters of every epoch this store writes

    @property
    def connected(self) -> bool:
        """Is what the store hands over current? (False while Redis is out of reach: RAM may
        then be stale, so reads go to the store, which answers 503.)"""

    async def open(self, listener: Listener) -> None:
        """Connect and start background work; raise StoreUnavailable if it cannot be used."""

    async def close(self) -> None:
        """Stop background work and disconnect."""

    async def healthy(self) -> bool: ...

    async def secret(self) -> bytes:
        """A random server secret (XSRF tokens are signed with it), made once and kept where the
        store keeps its data, so every process of the store shares it: in RAM for the memory
        store (a restart makes a new one), in Redis, beside the SQLite file."""

    def now_ms(self) -> int:
        """The store's clock, which dates the epochs of new histories (Unix milliseconds)."""

    def forgot_between(self, since_ms: int, until_ms: int) -> bool:
        """Could the store have forgotten a whole history of a room between the two times?"""

    async def publish(self, room: str, body: str, name: str | None,
                      client_key: str | None = None) -> Posted:
        """Store a message; it reaches the listener (maybe not before this returns: Redis)."""

    async def read(self, room: str, after: int | None, limit: int) -> tuple[Room, list[Message]]:
        """The room as it is now, and up to ``limit`` messages of its current history: the first
        ones after seq ``after``, or (``after`` None) the newest, oldest first."""

    async def older(self, room: str, epoch: str, before: int,
                    limit: int) -> tuple[Room, list[Message]]:
        """The room as it is now, and up to ``limit`` messages of history ``epoch`` just before
        seq ``before``, oldest first (none if ``epoch`` is not the current history)."""

    async def watch(self, room: str) -> None:
        """A client here follows ``room``: make sure its new messages reach the listener (Redis
        starts reading the room; the other stores see every message anyway)."""

    def settled(self, room: str) -> bool:
        """Has every message of ``room`` stored so far reached the listener? (Redis: never sure.)"""

    async def recent(self, limit: int) -> list[tuple[str, float]]:
        """Up to ``limit`` rooms with the newest messages, newest first, each with its newest
        message's time (Unix seconds), beyond what reaches this process's RAM: the file's rooms
        as they were at start (SQLite), every process's rooms (Redis, shared once a second),
        none (memory: RAM is all there is). May raise StoreUnavailable."""

    # ---- presence and typing (nothing of it is stored; a single-process store keeps none) ----

    async def share(self, room: str, view: View, ttl: float) -> None:
        """Tell the other processes this one's presence in ``room`` (an empty view: none), to be
        dropped unless shared again within ``ttl`` seconds."""

    async def views(self, rooms: list[str]) -> dict[str, list[View]]:
        """The other processes' presence in ``rooms`` (views not renewed lately are dropped)."""

    async def typing(self, room: str, name: str, until: float) -> None:
        """Relay a typing notice to every process's listener (this one's included)."""
