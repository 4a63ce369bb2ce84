"""Message ids and cursors: ``<epoch>-<position>``, no I/O.

An id is an epoch (random per history: a process start for the memory store, a stream's
creation for Redis) and a position that strictly increases within a room. The memory store's
position is one integer (``k3v9x0qa-17``); Redis uses its stream id's two (``k3v9x0qa-1795770403829-0``).
Only ``[a-z0-9-]`` occur, so ``m<id>`` is a valid HTML id and the value is safe in an SSE ``id:`` line.
"""

from __future__ import annotations

import re
import secrets
from typing import NamedTuple

EARLIEST = "earliest"
_EPOCH_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
# Positions are written without leading zeros, so every cursor has exactly one spelling.
_ID_RE = re.compile(r"([a-z0-9]{1,16})-(0|[1-9][0-9]{0,18})(?:-(0|[1-9][0-9]{0,18}))?")


class Cursor(NamedTuple):
    epoch: str
    pos: tuple[int, ...]


def new_epoch() -> str:
    """Ten random base-36 characters (about 51 bits): a lost history never comes back with the same epoch."""
    return "".join(secrets.choice(_EPOCH_ALPHABET) for _ in range(10))


def format_id(epoch: str, pos: tuple[int, ...]) -> str:
    return epoch + "-" + "-".join(map(str, pos))


def parse_cursor(value: str) -> Cursor | None:
    """The cursor in ``value``, or None when it is not an id as ``format_id`` writes one (malformed)."""
    m = _ID_RE.fullmatch(value)
    if m is None:
        return None
    epoch, first, second = m.groups()
    return Cursor(epoch, (int(first),) if second is None else (int(first), int(second)))
