"""SQLiteStore: rooms' histories in one SQLite file that this process owns.

- Posts go to the writer thread (``writer.Writer``: group commit); each post's future resolves
  on the event loop after its transaction committed, right after the message was handed to the
  listener, so a 200 means the message is on disk (``--sqlite-sync full``) and in RAM.
- Reads run on a small pool of reading threads, each with its own connection: WAL readers
  read one consistent snapshot and never block the writer or each other.
- The epoch, every room's positions and the server secret are in the file, so a cursor issued
  before a restart (clean or kill -9) is still trusted after it.

Nothing here waits for the disk on the event loop: opening and closing run in a thread too.
"""

from __future__ import annotations

import asyncio
import heapq
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

from ...core.ids import Room
from ...core.message import Message, Renderer, make_message
from ...core.presence import View
from ...settings import Settings, sqlite_path
from ..base import Listener, Posted, StoreUnavailable
from .database import Opened, open_file
from .writer import Maintained, Post, Writer

READERS: Final = 4  # reading threads (and connections)
# How many of the file's rooms, newest first, are read at start for the room list (GET /a/rooms);
# after that every post is made here and reaches the feed's RAM.
RECENT_AT_START: Final = 100
# A cursor may name any seq of up to 19 digits; SQLite's integers stop at 2**63 - 1, and no
# room gets near this.
MAX_SEQ: Final = 2**62

T = TypeVar("T")


class SQLiteStore:
    def __init__(self, settings: Settings, render: Renderer) -> None:
        path = sqlite_path(settings.store)
        assert path is not None
        self.path = path
        self.store_id = ""  # the file's, read by open()
        self._settings = settings
        self._render = render
        self._listener: Listener | None = None
        self._db: Opened | None = None
        self._writer: Writer | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_lock = threading.Lock()
        self._pending: dict[str, int] = {}  # room -> posts between submit and hand-over
        self._secret = b""
        self._closed = False
        self.forgot_ms = 0
        self._recent: dict[str, float] = {}  # the file's newest rooms at start (RECENT_AT_START)

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._closed

    # ---- clocks ----------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def forgot_between(self, since_ms: int, until_ms: int) -> bool:
        return self.forgot_ms >= since_ms

    # ---- life ------------------------------------------------------------------------------

    async def open(self, listener: Listener) -> None:
        self._listener = listener
        settings = self._settings
        db = self._db = await asyncio.to_thread(open_file, self.path, settings.sqlite_sync)
        self.store_id, self._secret, self.forgot_ms = db.store_id, db.secret, db.forgot_ms
        self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="sqlite-read")
        self._writer = Writer(db.writer, last_epoch_ms=db.last_epoch_ms, store_id=db.store_id,
                              retain_messages=settings.retain_messages,
                              retain_seconds=settings.retain_days * 86400,
                              loop=asyncio.get_running_loop(), on_batch=self._committed,
                              on_maintained=self._maintained)
        self._writer.start()
        self._recent = dict(await self._in_reader(lambda conn: conn.execute(
            "SELECT r.name, m.ts FROM rooms r JOIN messages m ON m.room = r.id AND m.seq = r.last "
            "ORDER BY m.ts DESC LIMIT ?", (RECENT_AT_START,)).fetchall()))

    async def close(self) -> None:
        if self._closed or self._db is None:
            return
        self._closed = True
        db, writer, readers = self._db, self._writer, self._readers
        if readers is not None:
            await asyncio.to_thread(readers.shutdown)
        if writer is not None:
            writer.stop()  # after the posts already queued, which are still written and answered
            await asyncio.to_thread(writer.join)
        await asyncio.to_thread(db.close)

    async def healthy(self) -> bool:
        if not self.connected or self._writer is None or not self._writer.is_alive():
            return False
        try:
            await self._in_reader(lambda conn: conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall())
        except StoreUnavailable:
            return False
        return True

    async def secret(self) -> bytes:
        return self._secret

    # ---- writing ---------------------------------------------------------------------------

    async def publish(self, room: str, body: str, name: str | None,
                      client_key: str | None = None) -> Posted:
        writer = self._writer
        if writer is None or self._closed:
            raise StoreUnavailable("the SQLite store is closed")
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._pending[room] = self._pending.get(room, 0) + 1
        writer.submit(Post(room, body, name, client_key, time.time(), future))
        posted = await future
        assert isinstance(posted, Posted)
        return posted

    def _committed(self, batch: list[Post]) -> None:
        """On the event loop, after a batch's transaction: each message to the listener, in
        order, then its post answered (a failed batch: every post gets the error)."""
        listener, render, pending = self._listener, self._render, self._pending
        assert listener is not None
        for post in batch:
            try:
                if post.error is not None:
                    if not post.future.done():
                        post.future.set_exception(post.error)
                    continue
                message = make_message(post.room, post.epoch, post.seq, post.body, post.name,
                                       post.ts, render)
                if not post.replayed:
                    listener.accept(message)
                if not post.future.done():
                    post.future.set_result(Posted(message, post.replayed))
            finally:
                left = pending[post.room] - 1
                if left:
                    pending[post.room] = left
                else:
                    del pending[post.room]

    def _maintained(self, done: Maintained) -> None:
        listener = self._listener
        assert listener is not None
        if done.forgot_ms:
            self.forgot_ms = done.forgot_ms
        for room in done.forgotten:
            listener.forget(room)
            self._recent.pop(room, None)
        for room, floor in done.trims:
            listener.trim(room, floor)

    def settled(self, room: str) -> bool:
        return room not in self._pending

    async def watch(self, room: str) -> None:
        pass  # every message of this file is posted by this process: the listener has them all

    async def recent(self, limit: int) -> list[tuple[str, float]]:
        return heapq.nlargest(limit, self._recent.items(), key=lambda item: item[1])

    # ---- presence and typing: one process, so nothing to share ----------------------------

    async def share(self, room: str, view: View, ttl: float) -> None:
        pass

    async def views(self, rooms: list[str]) -> dict[str, list[View]]:
        return {}

    async def typing(self, room: str, name: str, until: float) -> None:
        if self._listener is not None:
            self._listener.typed(room, name, until)

    # ---- reading ---------------------------------------------------------------------------

    async def read(self, room: str, after: int | None, limit: int) -> tuple[Room, list[Message]]:
        if after is None:
            sql = ("SELECT seq, ts, name, body FROM messages WHERE room = ? "
                   "ORDER BY seq DESC LIMIT ?")
            return await self._read(room, sql, (limit,), newest_first=True)
        sql = "SELECT seq, ts, name, body FROM messages WHERE room = ? AND seq > ? ORDER BY seq LIMIT ?"
        return await self._read(room, sql, (min(after, MAX_SEQ), limit), newest_first=False)

    async def older(self, room: str, epoch: str, before: int,
                    limit: int) -> tuple[Room, list[Message]]:
        sql = ("SELECT seq, ts, name, body FROM messages WHERE room = ? AND seq < ? "
               "ORDER BY seq DESC LIMIT ?")
        return await self._read(room, sql, (min(before, MAX_SEQ), limit), newest_first=True,
                                epoch=epoch)

    async def _read(self, room: str, sql: str, args: tuple[int, ...], *, newest_first: bool,
                    epoch: str | None = None) -> tuple[Room, list[Message]]:
        render = self._render

        def run(conn: sqlite3.Connection) -> tuple[Room, list[Message]]:
            conn.execute("BEGIN")  # one snapshot for the room's row and its messages
            try:
                found = conn.execute("SELECT id, epoch, floor, last FROM rooms WHERE name = ?",
                                     (room,)).fetchone()
                if found is None:
                    return Room(None), []
                room_id, current, floor, last = found
                rows = [] if epoch is not None and epoch != current else \
                    conn.execute(sql, (room_id, *args)).fetchall()
            finally:
                conn.execute("COMMIT")
            if newest_first:
                rows.reverse()
            return Room(current, floor, last), [
                make_message(room, current, seq, body, name, ts, render)
                for seq, ts, name, body in rows]

        return await self._in_reader(run)

    async def _in_reader(self, work: Callable[[sqlite3.Connection], T]) -> T:
        readers, db = self._readers, self._db
        if readers is None or db is None or self._closed:
            raise StoreUnavailable("the SQLite store is closed")

        def call() -> T:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                with self._reader_lock:
                    conn = self._local.conn = db.reader()
            try:
                return work(conn)
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreUnavailable(f"the SQLite store could not read: {exc}") from exc

        try:
            return await asyncio.get_running_loop().run_in_executor(readers, call)
        except RuntimeError as exc:  # the pool was shut down meanwhile
            raise StoreUnavailable("the SQLite store is closed") from exc
