"""The one writer: a thread that owns the writing connection, with group commit and retention.

Posts queue up for the thread. It takes every post waiting (up to ``MAX_BATCH``) into one
transaction, so while a commit waits for the disk the next posts gather and share the next one:
under load many posts cost one fsync. After the commit it hands the whole batch back to the
event loop in one call (``call_soon_threadsafe``), where the store hands each message to the
listener and resolves its post, in order. Nothing on the event loop waits for the disk.

Between batches, at most every ``MAINTAIN_EVERY`` seconds (sooner while behind), the thread
trims what retention no longer keeps, in transactions of at most ``TRIM_ROWS`` rows, gives free
pages back to the file system (incremental vacuum) and prunes idempotency keys. The trims go to
the event loop the same way, after the batches committed before them.

A failed transaction (disk full, an I/O error) is rolled back whole: its posts get
StoreUnavailable, their seqs are not used, and the next batch tries again.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from ...core.ids import epoch_of
from ..base import KeyConflict, StoreUnavailable
from .database import mark_clean
from .schema import KEY_WINDOW_MS

log = logging.getLogger(__name__)

MAX_BATCH: Final = 512  # posts in one transaction at most
TRIM_ROWS: Final = 500  # messages one retention transaction deletes at most
MAINTAIN_EVERY: Final = 0.25  # seconds between retention passes while there is work
AGE_EVERY: Final = 1.0  # seconds between looks for messages past --retain-days
KEYS_EVERY: Final = 60.0  # seconds between prunings of expired idempotency keys
VACUUM_PAGES: Final = 256  # pages one incremental vacuum gives back at most
ROOM_CACHE: Final = 10_000  # rooms whose row the writer keeps in RAM


@dataclass(slots=True)
class Post:
    """A post on its way through the writer; the writer fills in the second half."""

    room: str
    body: str
    name: str | None
    key: str | None
    ts: float
    future: asyncio.Future[object]
    epoch: str = ""
    seq: int = 0
    replayed: bool = False  # a repeated key: epoch, seq and ts are the original message's
    error: Exception | None = None


@dataclass(slots=True)
class RoomRow:
    id: int
    epoch: str
    floor: int
    last: int


@dataclass
class Maintained:
    """What one retention pass did: new floors, rooms forgotten, and when."""

    trims: list[tuple[str, int]]
    forgotten: list[str]
    forgot_ms: int


_STOP: Final = object()


class Writer(threading.Thread):
    def __init__(self, conn: sqlite3.Connection, *, last_epoch_ms: int, store_id: str,
                 retain_messages: int, retain_seconds: float, loop: asyncio.AbstractEventLoop,
                 on_batch: Callable[[list[Post]], None],
                 on_maintained: Callable[[Maintained], None]) -> None:
        super().__init__(name="sqlite-writer", daemon=True)
        self.conn = conn
        self.store_id = store_id
        self.last_epoch_ms = last_epoch_ms
        self.retain = retain_messages
        self.retain_seconds = retain_seconds
        self.loop = loop
        self.on_batch = on_batch
        self.on_maintained = on_maintained
        self.queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.rooms: dict[str, RoomRow] = {}  # the writer's own view; a cache of the rooms table
        self.over: set[str] = set()  # rooms holding more than --retain-messages
        self.failed = False  # the last transaction failed (disk full, I/O error)
        now = time.monotonic()
        self._next_age = now if retain_seconds else float("inf")
        self._next_keys = now + KEYS_EVERY
        self._last_maintain = 0.0
        self._age_behind = False
        self._vacuum_behind = False  # free pages still to give back

    # ---- called from the event loop --------------------------------------------------------

    def submit(self, post: Post) -> None:
        self.queue.put(post)

    def stop(self) -> None:
        self.queue.put(_STOP)

    # ---- the thread -----------------------------------------------------------------------

    def run(self) -> None:
        try:
            for (name,) in self.conn.execute("SELECT name FROM rooms WHERE last - floor > ?",
                                             (self.retain,)):
                self.over.add(name)
            stopping = False
            while not stopping:
                try:
                    item = self.queue.get(timeout=self._idle_timeout())
                except queue.Empty:
                    item = None
                batch: list[Post] = []
                while item is not None:
                    if item is _STOP:
                        stopping = True
                        break
                    assert isinstance(item, Post)
                    batch.append(item)
                    if len(batch) >= MAX_BATCH:
                        break
                    try:
                        item = self.queue.get_nowait()
                    except queue.Empty:
                        item = None
                if batch:
                    try:
                        self._write(batch)
                    except Exception as exc:  # a bug: fail the batch, keep the thread
                        log.exception("sqlite: writing a batch failed")
                        self._rolled_back(sqlite3.Error(repr(exc)), [p.room for p in batch])
                        for post in batch:
                            post.error = StoreUnavailable(f"the SQLite store failed: {exc!r}")
                    self.loop.call_soon_threadsafe(self.on_batch, batch)
                if not stopping and self._maintenance_due():
                    try:
                        self._maintain()
                    except Exception:
                        log.exception("sqlite: a retention pass failed")
                        self._last_maintain = time.monotonic()
        finally:
            try:
                mark_clean(self.conn)
            except sqlite3.Error as exc:
                log.warning("sqlite: could not mark the file as cleanly closed: %s", exc)

    def _idle_timeout(self) -> float:
        now = time.monotonic()
        if self.over or self._age_behind or self._vacuum_behind:
            return max(0.0, self._last_maintain + MAINTAIN_EVERY - now)
        return max(0.0, min(self._next_age, self._next_keys) - now)

    def _maintenance_due(self) -> bool:
        now = time.monotonic()
        if (self.over or self._age_behind or self._vacuum_behind) and \
                now >= self._last_maintain + MAINTAIN_EVERY:
            return True
        return now >= self._next_age or now >= self._next_keys

    # ---- posts -----------------------------------------------------------------------------

    def _room(self, name: str) -> RoomRow | None:
        row = self.rooms.get(name)
        if row is None:
            found = self.conn.execute("SELECT id, epoch, floor, last FROM rooms WHERE name = ?",
                                      (name,)).fetchone()
            if found is None:
                return None
            row = RoomRow(*found)
            if len(self.rooms) >= ROOM_CACHE:
                del self.rooms[next(iter(self.rooms))]
            self.rooms[name] = row
        return row

    def _new_room(self, name: str) -> RoomRow:
        # Dated after every history this file has had, so no old cursor can match it.
        ms = self.last_epoch_ms = max(int(time.time() * 1000), self.last_epoch_ms + 1)
        epoch = epoch_of(self.store_id, ms)
        cur = self.conn.execute("INSERT INTO rooms (name, epoch, floor, last) VALUES (?, ?, 0, 0)",
                                (name, epoch))
        self.conn.execute("UPDATE meta SET value = ? WHERE key = 'last_epoch_ms'", (ms,))
        assert cur.lastrowid is not None
        row = self.rooms[name] = RoomRow(cur.lastrowid, epoch, 0, 0)
        return row

    def _write(self, batch: list[Post]) -> None:
        conn = self.conn
        touched: dict[str, RoomRow] = {}
        try:
            conn.execute("BEGIN IMMEDIATE")
            now_ms = int(time.time() * 1000)
            for post in batch:
                row = touched.get(post.room) or self._room(post.room) or self._new_room(post.room)
                touched[post.room] = row
                self._post(post, row, now_ms)
            conn.executemany("UPDATE rooms SET last = ? WHERE id = ?",
                             [(row.last, row.id) for row in touched.values()])
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rolled_back(exc, touched)
            error = StoreUnavailable(f"the SQLite store could not write: {exc}")
            for post in batch:
                post.error, post.replayed = error, False
            return
        if self.failed:
            log.warning("sqlite: writing works again")
            self.failed = False
        for name, row in touched.items():
            if row.last - row.floor > self.retain:
                self.over.add(name)

    def _post(self, post: Post, row: RoomRow, now_ms: int) -> None:
        conn = self.conn
        if post.key is not None:
            found = conn.execute("SELECT id, seq, ms FROM keys WHERE room = ? AND key = ?",
                                 (row.id, post.key)).fetchone()
            if found is not None:
                key_id, seq, ms = found
                original = None
                if ms > now_ms - KEY_WINDOW_MS:
                    original = conn.execute(
                        "SELECT ts, name, body FROM messages WHERE room = ? AND seq = ?",
                        (row.id, seq)).fetchone()
                if original is not None:
                    ts, name, body = original
                    if (body, name) != (post.body, post.name):
                        post.error = KeyConflict()
                        return
                    post.epoch, post.seq, post.ts, post.replayed = row.epoch, seq, ts, True
                    return
                # Past the window, or its message is no longer kept: the key names nothing now.
                conn.execute("DELETE FROM keys WHERE id = ?", (key_id,))
        row.last += 1
        conn.execute("INSERT INTO messages (room, seq, ts, name, body) VALUES (?, ?, ?, ?, ?)",
                     (row.id, row.last, post.ts, post.name, post.body))
        if post.key is not None:
            conn.execute("INSERT INTO keys (room, key, seq, ms) VALUES (?, ?, ?, ?)",
                         (row.id, post.key, row.last, now_ms))
        post.epoch, post.seq = row.epoch, row.last

    def _rolled_back(self, exc: sqlite3.Error, touched: Iterable[str]) -> None:
        """Undo a failed transaction: the rows it changed are read again when next needed."""
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        except sqlite3.Error as again:
            log.warning("sqlite: rollback failed too: %s", again)
        for name in touched:
            self.rooms.pop(name, None)
        if not self.failed:
            log.error("sqlite: a write failed and was rolled back, nothing of it is stored: %s",
                      exc)
        self.failed = True

    # ---- retention -------------------------------------------------------------------------

    def _maintain(self) -> None:
        self._last_maintain = now = time.monotonic()
        done = Maintained([], [], 0)
        touched: dict[str, RoomRow] = {}
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            budget = self._trim_counts(done, touched)
            if budget > 0 and (now >= self._next_age or self._age_behind):
                self._next_age = now + AGE_EVERY
                self._trim_ages(budget, done, touched)
            if now >= self._next_keys:
                self._next_keys = now + KEYS_EVERY
                conn.execute("DELETE FROM keys WHERE id IN (SELECT id FROM keys ORDER BY id LIMIT ?)"
                             " AND ms < ?", (TRIM_ROWS, int(time.time() * 1000) - KEY_WINDOW_MS))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rolled_back(exc, list(touched))
            self.over.update(touched)  # looked at again next time
            self._age_behind = False
            return
        if done.trims or done.forgotten:
            self.loop.call_soon_threadsafe(self.on_maintained, done)
        if done.trims or done.forgotten or self._vacuum_behind:
            self._vacuum_behind = self._vacuum()

    def _trim_counts(self, done: Maintained, touched: dict[str, RoomRow]) -> int:
        """Rooms over --retain-messages lose their oldest; returns the rows still allowed."""
        budget = TRIM_ROWS
        for name in list(self.over):
            row = self._room(name)
            target = -1 if row is None else row.last - self.retain
            if row is None or target <= row.floor:
                self.over.discard(name)
                continue
            touched[name] = row
            floor = min(target, row.floor + budget)
            self.conn.execute("DELETE FROM messages WHERE room = ? AND seq <= ?", (row.id, floor))
            self.conn.execute("UPDATE rooms SET floor = ? WHERE id = ?", (floor, row.id))
            budget -= floor - row.floor
            row.floor = floor
            done.trims.append((name, floor))
            if floor == target:
                self.over.discard(name)
            if budget <= 0:
                break
        return budget

    def _trim_ages(self, budget: int, done: Maintained, touched: dict[str, RoomRow]) -> None:
        """Messages past --retain-days, oldest first across rooms: in each room a run of its
        oldest (the ids follow the order of posting), so each room's kept messages stay
        contiguous. A room left with nothing is forgotten."""
        cutoff = time.time() - self.retain_seconds
        cur = self.conn.execute("SELECT id, room, seq, ts FROM messages ORDER BY id LIMIT ?",
                                (budget,))
        upto, floors, seen = None, {}, 0
        for message_id, room_id, seq, ts in cur:  # read only as far as the expired ones go
            if ts >= cutoff:
                break
            upto, floors[room_id], seen = message_id, seq, seen + 1
        cur.close()
        self._age_behind = seen == budget  # more may be expired: look again soon
        if upto is None:
            return
        self.conn.execute("DELETE FROM messages WHERE id <= ?", (upto,))
        for room_id, seq in floors.items():
            name, floor, last = self.conn.execute(
                "SELECT name, floor, last FROM rooms WHERE id = ?", (room_id,)).fetchone()
            floor = max(floor, seq)
            row = self._room(name)
            assert row is not None
            touched[name] = row
            row.floor = floor
            if floor >= last:
                self.conn.execute("DELETE FROM rooms WHERE id = ?", (room_id,))
                self.conn.execute("DELETE FROM keys WHERE room = ?", (room_id,))
                del self.rooms[name]
                done.forgotten.append(name)
            else:
                self.conn.execute("UPDATE rooms SET floor = ? WHERE id = ?", (floor, room_id))
                done.trims.append((name, floor))
        if done.forgotten:
            done.forgot_ms = int(time.time() * 1000)
            self.conn.execute("UPDATE meta SET value = ? WHERE key = 'forgot_ms'", (done.forgot_ms,))

    def _vacuum(self) -> bool:
        """Give free pages back, ``VACUUM_PAGES`` at a time, once they are a good part of the
        file (steady posting reuses them, so this only runs when the file has more room than it
        needs); True while there is more to give back."""
        try:
            (free,) = self.conn.execute("PRAGMA freelist_count").fetchone()
            (pages,) = self.conn.execute("PRAGMA page_count").fetchone()
            if free <= max(64, pages // 8):
                return False
            # executescript: the pragma frees one page per step, and execute() steps once.
            self.conn.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")
            # The file itself shrinks when the WAL is folded in; do not wait for readers.
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            return bool(free > VACUUM_PAGES)
        except sqlite3.Error as exc:
            log.warning("sqlite: incremental vacuum failed: %s", exc)
            return False
