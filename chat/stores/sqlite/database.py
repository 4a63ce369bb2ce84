"""Opening the file: the one-owner lock, recognising the file, creating it, and what its meta
says about the last run. Blocking; the store calls it from a thread.

Order matters, so that a file that is not ours is never written: lock, read the header bytes,
then check the tables through a read-only connection (which never checkpoints a WAL into the
file), and only then open the connection that writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ...core.ids import epoch_of, new_store_id
from ..base import StoreInUse, StoreUnavailable
from .schema import CREATE, NotOurs, check_header, ensure_directory

log = logging.getLogger(__name__)

SYNC_MODES: Final = {"full": "FULL", "normal": "NORMAL"}
# A WAL grown past this (a checkpoint held up by a long read) is cut back to it once it starts
# over; about what the automatic checkpoint lets it reach (1,000 pages).
JOURNAL_SIZE_LIMIT: Final = 4 * 1024 * 1024


@dataclass
class Opened:
    """What the store needs from the file once it is open."""

    path: Path
    lock_fd: int
    writer: sqlite3.Connection
    store_id: str
    secret: bytes
    last_epoch_ms: int
    forgot_ms: int
    readers: list[sqlite3.Connection] = field(default_factory=list)

    def reader(self) -> sqlite3.Connection:
        """A connection for one reading thread: WAL readers never block the writer."""
        conn = connect(self.path)
        conn.execute("PRAGMA query_only = ON")
        self.readers.append(conn)
        return conn

    def close(self) -> None:
        """Readers, then the writer (its close checkpoints the WAL), then the lock: closing our
        own descriptor of the file last keeps SQLite's locks on it intact until then."""
        for conn in self.readers:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self.readers.clear()
        with contextlib.suppress(sqlite3.Error):
            self.writer.close()
        os.close(self.lock_fd)


def connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: transactions are our own BEGIN/COMMIT. check_same_thread=False: a
    # connection is made in one thread and used by another, never by two at once.
    return sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)


def _meta(conn: sqlite3.Connection) -> dict[str, bytes | str | int]:
    return dict(conn.execute("SELECT key, value FROM meta").fetchall())


def lock(path: Path) -> int:
    """An exclusive flock on the file itself, held as long as the store is open."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StoreUnavailable(f"cannot open the SQLite file {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreInUse(f"{path} is in use by another chat server: one process owns a SQLite "
                         "file (several processes need --store redis://...)") from None
    return fd


def validate(path: Path) -> None:
    """Read our tables through a read-only connection; NotOurs if they are not readable."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        raise NotOurs(f"cannot read {path}: {exc}") from None
    try:
        meta = _meta(conn)
        conn.execute("SELECT id, name, epoch, floor, last FROM rooms LIMIT 1").fetchall()
        conn.execute("SELECT id, room, seq, ts, name, body FROM messages LIMIT 1").fetchall()
        conn.execute("SELECT id, room, key, seq, ms FROM keys LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        raise NotOurs(f"{path} is damaged or not a chat database ({exc})") from None
    finally:
        conn.close()
    if not isinstance(meta.get("store_id"), str) or not isinstance(meta.get("secret"), bytes):
        raise NotOurs(f"{path} is damaged: its meta table has no store id or secret")


def open_file(path: Path, sync: str) -> Opened:
    """Lock, recognise or create, and open ``path``; the meta rows the store needs.

    Raises StoreInUse (another process owns the file) or StoreUnavailable (not ours, damaged,
    unreadable), each with one line that names the file.
    """
    try:
        ensure_directory(path)
    except OSError as exc:
        raise StoreUnavailable(f"cannot create the directory of {path}: {exc.strerror}") from None
    fd = lock(path)
    try:
        exists = check_header(path)
        if exists:
            validate(path)
        writer = connect(path)
    except NotOurs as exc:
        os.close(fd)
        raise StoreUnavailable(f"{exc}; refusing to use it (nothing was written)") from None
    except sqlite3.Error as exc:
        os.close(fd)
        raise StoreUnavailable(f"cannot open {path}: {exc}") from None
    try:
        opened = _prepare(path, fd, writer, exists, sync)
    except sqlite3.Error as exc:
        with contextlib.suppress(sqlite3.Error):
            writer.close()
        os.close(fd)
        raise StoreUnavailable(f"cannot open {path}: {exc}") from None
    return opened


def _prepare(path: Path, fd: int, conn: sqlite3.Connection, exists: bool, sync: str) -> Opened:
    if not exists:
        # Created in rollback-journal mode with full sync, so the header (application_id) is in
        # the file itself, then switched to WAL for good.
        conn.execute("PRAGMA synchronous = FULL")
        conn.executescript(CREATE)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
            ("store_id", new_store_id()), ("secret", secrets.token_bytes(32)),
            ("last_epoch_ms", 0), ("forgot_ms", 0)])
        conn.execute("COMMIT")
        log.info("created the SQLite store %s", path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
    conn.execute("PRAGMA synchronous = FULL")  # what this function writes is durable
    meta = _meta(conn)
    store_id = str(meta["store_id"])
    last_epoch_ms = int(meta["last_epoch_ms"])
    conn.execute("BEGIN IMMEDIATE")
    if meta.get("writing") == "normal":
        # The last run wrote with synchronous=NORMAL and did not stop cleanly: a power loss may
        # have lost its last commits, whose ids clients may hold. Rename every history (same
        # messages, new ids) so no such cursor is ever trusted.
        store_id = new_store_id()
        last_epoch_ms = max(int(time.time() * 1000), last_epoch_ms + 1)
        epoch = epoch_of(store_id, last_epoch_ms)
        rooms = conn.execute("UPDATE rooms SET epoch = ?", (epoch,)).rowcount
        conn.executemany("UPDATE meta SET value = ? WHERE key = ?",
                         [(store_id, "store_id"), (last_epoch_ms, "last_epoch_ms")])
        log.warning("%s: the last run used --sqlite-sync normal and did not stop cleanly; its "
                    "last commits may be lost, so the %d rooms' histories get new ids (every "
                    "client's cursor resets once)", path, rooms)
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('writing', ?)", (sync,))
    conn.execute("COMMIT")
    conn.execute(f"PRAGMA synchronous = {SYNC_MODES[sync]}")
    secret = meta["secret"]
    assert isinstance(secret, bytes)
    return Opened(path, fd, conn, store_id, secret, last_epoch_ms, int(meta["forgot_ms"]))


def mark_clean(conn: sqlite3.Connection) -> None:
    """At a clean stop: nothing is lost whatever the sync mode; the WAL is folded in."""
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("DELETE FROM meta WHERE key = 'writing'")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
