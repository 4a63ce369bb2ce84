"""Message ids and cursors, one grammar for every store, and the one function that judges a cursor.

An id is ``<epoch>-<seq>``, e.g. ``k3v9x0lq7ne2zc-17``:

- ``seq`` numbers a room's messages 1, 2, 3... in the order the store accepted them. It is
  written without leading zeros, so every cursor has exactly one spelling.
- ``epoch`` names one history of one room: six characters that name the store (a process for
  the memory store, a file for SQLite, a deployment for Redis) and eight that give, in base 36,
  the millisecond the history began. A store that loses a room's history (a restart of the
  memory store, a room forgotten to stay within memory, a Redis key expired or flushed) starts
  the room's next history at a later millisecond, so a cursor of the lost history can never
  be mistaken for one of the new one. Epochs of one store are ordered by that millisecond.

Only ``[a-z0-9-]`` occur, so ``m<id>`` is a valid HTML id and an id is safe in an SSE ``id:``
line. Nothing here does I/O.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import NamedTuple

EARLIEST = "earliest"
STORE_ID_LEN = 6
_TIME_LEN = 8  # base-36 milliseconds: 8 digits last until the year 6429
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
# Epochs of 1 to 16 characters parse, so a cursor from an older server is judged "epoch", not
# "malformed"; only the 14-character ones of ``epoch_of`` can match a history.
_ID_RE = re.compile(r"([a-z0-9]{1,16})-(0|[1-9][0-9]{0,18})")


class Cursor(NamedTuple):
    epoch: str
    seq: int


def new_store_id() -> str:
    """Six random base-36 characters (31 bits) naming a store: a process, a file, a deployment."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(STORE_ID_LEN))


def _base36(n: int) -> str:
    digits = []
    while n:
        n, d = divmod(n, 36)
        digits.append(_ALPHABET[d])
    return "".join(reversed(digits)).rjust(_TIME_LEN, "0")


def epoch_of(store_id: str, ms: int) -> str:
    """The epoch of a history of ``store_id`` that began at ``ms`` (Unix milliseconds)."""
    return store_id + _base36(ms)


def epoch_ms(epoch: str) -> int:
    """When the history of ``epoch`` began (0 for an epoch not written by ``epoch_of``)."""
    if len(epoch) != STORE_ID_LEN + _TIME_LEN:
        return 0
    return int(epoch[STORE_ID_LEN:], 36)


def format_id(epoch: str, seq: int) -> str:
    return f"{epoch}-{seq}"


def parse(value: str) -> Cursor | None:
    """The cursor in ``value``, or None when it is not an id as ``format_id`` writes one."""
    m = _ID_RE.fullmatch(value)
    if m is None:
        return None
    return Cursor(m.group(1), int(m.group(2)))


def order(epoch: str, seq: int) -> tuple[int, int]:
    """Sort key of a position: histories of one store by their start, then by seq."""
    return epoch_ms(epoch), seq


class Room(NamedTuple):
    """What a store knows of a room when it judges a cursor.

    ``epoch`` is None while the store holds no history of the room. ``floor`` is the seq just
    before the oldest message the store still keeps (0 while it keeps the first), ``last`` the
    newest seq. ``asof``: the store's clock when it looked (0: not said), which dates an empty
    room's base, so that any history begun after the look is dated no earlier.
    """

    epoch: str | None
    floor: int = 0
    last: int = 0
    asof: int = 0


# (since_ms, until_ms) -> could the store have forgotten a history of some room in between?
ForgotBetween = Callable[[int, int], bool]


class Verdict(NamedTuple):
    """``reason`` is None when the cursor is trusted: the client has every message up to ``seq``
    of the room's history. Otherwise it says why not, and the client must start again."""

    reason: str | None
    seq: int


def judge(cursor: str, room: Room, store_id: str, now_ms: int,
          forgot_between: ForgotBetween) -> Verdict:
    """Is ``cursor`` a position in ``room``'s history, and which? The one place that decides.

    Reasons: ``malformed`` (not an id), ``epoch`` (another history, e.g. before a restart),
    ``unknown`` (beyond the newest message: never issued), ``evicted`` (older than what the
    store keeps). A cursor of seq 0 is the base of an empty room (``empty_base``): it stands
    before the first message of any history that began after it was handed out, provided the
    store cannot have forgotten a whole history of the room in between.
    """
    c = parse(cursor)
    if c is None:
        return Verdict("malformed", 0)
    if room.epoch is not None and c.epoch == room.epoch:
        if c.seq > room.last:
            return Verdict("unknown", 0)
        if c.seq < room.floor:
            return Verdict("evicted", 0)
        return Verdict(None, c.seq)
    if c.seq == 0 and c.epoch.startswith(store_id) and epoch_ms(c.epoch):
        issued = epoch_ms(c.epoch)
        if room.epoch is None:
            # Nothing held now: trusted unless a history may have come and gone since.
            if forgot_between(issued, now_ms):
                return Verdict("evicted", 0)
            return Verdict(None, 0)
        began = epoch_ms(room.epoch)
        if issued <= began and not forgot_between(issued, began):
            return Verdict(None, 0) if room.floor == 0 else Verdict("evicted", 0)
    return Verdict("epoch", 0)


def empty_base(store_id: str, now_ms: int) -> str:
    """The cursor of a room the store holds nothing of, handed out at ``now_ms``."""
    return format_id(epoch_of(store_id, now_ms), 0)
