"""The file's layout, and how a file is recognised as ours before anything writes to it.

- ``meta``: ``store_id`` (the first six characters of every epoch), ``secret`` (32 random
  bytes), ``last_epoch_ms`` (the newest history's start: a new one starts later still),
  ``forgot_ms`` (when a room was last forgotten), ``writing`` (the sync mode of a run that has
  not stopped cleanly; deleted at a clean stop).
- ``rooms``: one row per room with a history: ``epoch``, ``floor`` (the seq just before the
  oldest kept message) and ``last`` (the newest seq). The epoch is kept per room only: a
  message's id is its room's epoch and its seq, so renaming every epoch is one UPDATE.
- ``messages``: ``id`` is the insertion order across all rooms (so the oldest rows, whatever
  their room, come first: the age trim reads them in that order), ``(room, seq)`` is unique.
- ``keys``: idempotency keys, ``(room, key) -> seq`` with the post's time; pruned after
  ``KEY_WINDOW_MS``.

``PRAGMA application_id`` marks the file as ours and ``user_version`` is the layout's version.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

APPLICATION_ID: Final = 0x63686174  # "chat"
VERSION: Final = 1
KEY_WINDOW_MS: Final = 24 * 3600 * 1000  # a client_key names its message this long

_HEADER = b"SQLite format 3\x00"

# A new file: the pragmas first (auto_vacuum only takes before the first table), then the tables.
CREATE: Final = f"""
PRAGMA auto_vacuum = INCREMENTAL;
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {VERSION};
BEGIN;
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE rooms (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    epoch TEXT NOT NULL,
    floor INTEGER NOT NULL,
    last INTEGER NOT NULL
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    room INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    name TEXT,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX messages_room_seq ON messages (room, seq);
CREATE TABLE keys (
    id INTEGER PRIMARY KEY,
    room INTEGER NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX keys_room_key ON keys (room, key);
COMMIT;
"""


class NotOurs(Exception):
    """The file is not a chat database (or not one this version can read)."""


def check_header(path: Path) -> bool:
    """Is ``path`` one of our files (True), or new (False: missing or empty)? Reads the header
    only, writes nothing; raises NotOurs for anything else."""
    try:
        with path.open("rb") as f:
            header = f.read(100)
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        raise NotOurs(f"{path} is a directory, not a database file") from None
    if not header:
        return False
    if len(header) < 100 or not header.startswith(_HEADER):
        raise NotOurs(f"{path} is not a SQLite database (a corrupt file, or another kind of file)")
    app_id = int.from_bytes(header[68:72], "big")
    version = int.from_bytes(header[60:64], "big")
    if app_id != APPLICATION_ID:
        raise NotOurs(f"{path} is a SQLite database of another program (application_id "
                      f"{app_id:#x}, ours is {APPLICATION_ID:#x})")
    if version > VERSION:
        raise NotOurs(f"{path} was written by a newer version of chat (layout {version}, this "
                      f"version reads up to {VERSION})")
    return True


def ensure_directory(path: Path) -> None:
    """Make the file's directory (``var/`` on a first ``make run``)."""
    parent = path.parent
    if not parent.is_dir():
        os.makedirs(parent, exist_ok=True)
