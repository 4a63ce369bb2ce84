"""subscribe(): follow a room, across reconnects, never a message twice and never one skipped.

The client keeps one cursor: the id of the last message it handed out (or the id a reset gave).
Every (re)connection resumes from it, as ``Last-Event-ID`` on the stream or ``cursor`` on a
long-poll, and the server answers with exactly what follows. Only complete frames count, so a
stream cut in the middle of an event leaves the cursor before that event. Ids already handed out
are dropped in any case, should a server or a proxy ever send one again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import aiohttp

from .backoff import Backoff
from .common import (
    ID_RE,
    XSRF_COOKIE,
    XSRF_HEADER,
    PageError,
    RoomPage,
    base_url,
    check_room,
    describe,
    endpoint,
    error_text,
    retry_after,
    room_page,
)
from .errors import SubscribeError
from .sse import SSEParser

EARLIEST = "earliest"
Transport = Literal["stream", "poll"]


@dataclasses.dataclass(frozen=True, slots=True)
class Reset:
    """The server no longer has the history the cursor pointed into (it restarted with an in-memory
    store, or the cursor fell out of its buffer): messages may have been lost, and what follows
    starts again from what the server holds.

    ``reason`` is the stream's word ("epoch", "evicted", "unknown", "malformed"); a long-poll does
    not say why, so after a reset seen on a long-poll it is "unspecified".
    """

    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Status:
    """Where the subscription stands; ``on_status`` hears of every change of ``connected`` or
    ``transport``. ``detail`` says what failed, or, when long-polling, why the stream was refused."""

    connected: bool
    transport: Transport
    detail: str = ""


Item = dict[str, Any] | Reset


class _Refused(Exception):
    """The stream answered, but not with an event stream: try long-polling instead."""


class _Retry(Exception):
    """An answer worth trying again after a pause (at least ``wait`` seconds when given)."""

    def __init__(self, text: str, wait: float | None = None) -> None:
        super().__init__(text)
        self.wait = wait


_RETRYABLE = (aiohttp.ClientError, TimeoutError, ValueError, _Retry)


class Subscription:
    """An async iterator of a room's messages (dicts, as on the wire) and ``Reset`` notices.

    Use it as ``async with subscribe(url, room) as sub: async for item in sub: ...`` (or call
    ``aclose()``): that closes its connection. ``cursor`` is the id of the last item handed out: a
    program that saves it and passes it back as ``after`` resumes exactly there. Waiting for the
    next item may be cancelled (``asyncio.timeout``) without losing anything: the connection is
    kept by a task of its own, at most one item ahead of the program.
    """

    def __init__(self, url: str, room: str, *, after: str | None = None,
                 session: aiohttp.ClientSession | None = None, backoff: Backoff | None = None,
                 read_timeout: float = 60.0, restream_after: float = 300.0,
                 remember: int = 10_000, on_status: Callable[[Status], None] | None = None) -> None:
        self._follower = _Follower(url, room, after, session, backoff or Backoff(), read_timeout,
                                   restream_after, remember, on_status)
        self._cursor: str | None = None
        self._handed_out = False
        self._queue: asyncio.Queue[tuple[Item, str | None] | Exception] = asyncio.Queue(1)
        self._task: asyncio.Task[None] | None = None
        self._done = False

    @property
    def cursor(self) -> str | None:
        """Where the program stands: the id of the last message handed out (or the id a reset
        gave). Before the first item, where the subscription started: ``after``, or for a live
        one the newest message of the room once it is known. None while there is none."""
        return self._cursor if self._handed_out else self._follower.start

    @property
    def status(self) -> Status | None:
        return self._follower.status

    @property
    def backoff(self) -> Backoff:
        return self._follower.backoff

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        if self._done:
            raise StopAsyncIteration
        if self._task is None:
            self._task = asyncio.create_task(self._follower.run(self._queue))
        got = await self._queue.get()
        if isinstance(got, Exception):
            self._done = True
            await self.aclose()
            raise got
        item, self._cursor = got
        self._handed_out = True
        return item

    async def aclose(self) -> None:
        self._done = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Dropped without aclose(): stop the connection's task (it holds no reference to us).
        task = getattr(self, "_task", None)  # absent when __init__ raised
        if task is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                task.cancel()


class _Follower:
    """The connection side of a Subscription: it runs in a task and queues what it reads."""

    def __init__(self, url: str, room: str, after: str | None,
                 session: aiohttp.ClientSession | None, backoff: Backoff, read_timeout: float,
                 restream_after: float, remember: int,
                 on_status: Callable[[Status], None] | None) -> None:
        self.base = base_url(url)
        self.room = check_room(room)
        if after is not None and after != EARLIEST and not ID_RE.fullmatch(after):
            raise ValueError(f"after must be None, 'earliest' or a message id, got {after!r}")
        self._after = after
        self.cursor: str | None = None if after == EARLIEST else after
        self.start = self.cursor
        self._session = session
        self.backoff = backoff
        # The longest silence accepted from the server: the stream's heartbeat comes every 15 s and
        # a long-poll answers within 30 s with the server's defaults.
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=read_timeout,
                                              sock_read=read_timeout)
        self._restream_after = restream_after
        self._poll_until = 0.0  # after a refused stream: long-poll until this time.monotonic()
        self._seen: set[str] = set()
        self._seen_order: collections.deque[str] = collections.deque()
        self._remember = remember
        self._on_status = on_status
        self.status: Status | None = None
        self._page: RoomPage | None = None
        self._wait = 0.0
        self._refused = ""  # why the stream was last refused
        self._queue: asyncio.Queue[tuple[Item, str | None] | Exception] | None = None

    async def run(self, queue: asyncio.Queue[tuple[Item, str | None] | Exception]) -> None:
        self._queue = queue
        try:
            await self._run()
        except Exception as exc:  # SubscribeError, or a bug: the program hears of it
            await queue.put(exc)

    async def _put(self, item: Item) -> None:
        assert self._queue is not None
        await self._queue.put((item, self.cursor))

    async def _run(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            session = self._session
            if session is None:
                session = await stack.enter_async_context(
                    aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()))
            if self._after is None:
                # Live: start after the newest message the room's page shows, as the page itself
                # does, so a reconnection before the first message still misses nothing.
                await self._until_success(self._fetch_page, session)
                self.cursor = self.start = self._page.cursor if self._page else None
            while True:
                transport: Transport = "poll" if time.monotonic() < self._poll_until else "stream"
                try:
                    if transport == "stream":
                        await self._stream(session)
                    else:
                        await self._poll(session)
                    self._wait = self.backoff.next()  # the stream ended: come back after `retry`
                except _Refused as exc:
                    self._poll_until = time.monotonic() + self._restream_after
                    self._refused = f"stream refused: {exc}"
                    continue
                except PageError as exc:
                    if exc.final:
                        raise SubscribeError(str(exc)) from None
                    self._failed(transport, exc)
                except _RETRYABLE as exc:
                    self._failed(transport, exc)
                await asyncio.sleep(self._wait)

    async def _until_success(self, step: Callable[[aiohttp.ClientSession], Awaitable[None]],
                             session: aiohttp.ClientSession) -> None:
        while True:
            try:
                await step(session)
                return
            except PageError as exc:
                if exc.final:
                    raise SubscribeError(str(exc)) from None
                self._failed("stream", exc)
            except _RETRYABLE as exc:
                self._failed("stream", exc)
            await asyncio.sleep(self._wait)

    def _failed(self, transport: Transport, exc: Exception) -> None:
        wait = exc.wait if isinstance(exc, _Retry) else None
        self._wait = max(wait or 0.0, self.backoff.next())
        self._report(Status(False, transport, str(exc) if isinstance(exc, _Retry) else describe(exc)))

    def _connected(self, transport: Transport) -> None:
        self.backoff.reset()
        self._report(Status(True, transport, self._refused if transport == "poll" else ""))

    def _report(self, status: Status) -> None:
        previous = self.status
        self.status = status
        changed = previous is None or (previous.connected, previous.transport) != (
            status.connected, status.transport)
        if changed and self._on_status is not None:
            self._on_status(status)

    async def _fetch_page(self, session: aiohttp.ClientSession) -> None:
        self._page = await room_page(session, self.base, self.room, self._timeout)

    def _new(self, message: Any, frame_id: str | None = None) -> bool:
        """Is ``message`` a message not handed out before? If so it becomes the cursor."""
        if not isinstance(message, dict) or not isinstance(message.get("id"), str):
            raise ValueError(f"not a message object: {message!r:.200}")
        message_id = frame_id or message["id"]
        if message_id in self._seen:
            return False
        self._seen.add(message_id)
        self._seen_order.append(message_id)
        if len(self._seen_order) > self._remember:
            self._seen.discard(self._seen_order.popleft())
        self.cursor = message_id
        return True

    async def _stream(self, session: aiohttp.ClientSession) -> None:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        resume = self.cursor or (EARLIEST if self._after == EARLIEST else None)
        if resume is not None:
            headers["Last-Event-ID"] = resume
        url = endpoint(self.base, "/a/message/stream").with_query(room=self.room)
        async with session.get(url, headers=headers, timeout=self._timeout) as response:
            if response.status != 200 or response.content_type != "text/event-stream":
                raise _Refused(f"HTTP {response.status} {response.content_type}")
            self._connected("stream")
            parser = SSEParser()
            while chunk := await response.content.readany():
                for event in parser.feed(chunk):
                    if event.type == "message":
                        message = json.loads(event.data)
                        if self._new(message, event.id):
                            await self._put(message)
                    elif event.type == "reset":
                        data = json.loads(event.data)
                        reason = data.get("reason") if isinstance(data, dict) else None
                        if event.id is not None:
                            self.cursor = event.id  # a valid cursor of the new history
                        await self._put(Reset(reason if isinstance(reason, str) else "unspecified"))
                    # Any other event (presence, typing, ...) is not a message: no cursor move.
                if parser.retry is not None:
                    self.backoff.base = parser.retry / 1000

    async def _poll(self, session: aiohttp.ClientSession) -> None:
        if self._page is None:
            await self._fetch_page(session)
        assert self._page is not None
        xsrf = self._page.xsrf
        url = endpoint(self.base, "/a/message/updates")
        while time.monotonic() < self._poll_until:
            form = {"room": self.room, XSRF_COOKIE: xsrf}
            if self.cursor is not None:
                form["cursor"] = self.cursor
            async with session.post(url, data=form, cookies={XSRF_COOKIE: xsrf},
                                    headers={XSRF_HEADER: xsrf}, timeout=self._timeout) as response:
                text = await response.text(errors="replace")
                if response.status == 403:
                    self._page = None  # the token went stale: fetch the page again
                    raise _Retry(f"HTTP 403: {error_text(text)}")
                if response.status in (400, 404):
                    raise SubscribeError(f"HTTP {response.status}: {error_text(text)}")
                if response.status != 200:
                    raise _Retry(f"HTTP {response.status}: {error_text(text)}",
                                 retry_after(response.headers))
                reply = json.loads(text)
            if not isinstance(reply, dict):
                raise ValueError(f"not a long-poll reply: {text[:200]!r}")
            self._connected("poll")
            if reply.get("reset"):
                await self._put(Reset("unspecified"))
            for message in reply.get("messages") or []:
                if self._new(message):
                    await self._put(message)


def subscribe(url: str, room: str = "main", *, after: str | None = None,
              session: aiohttp.ClientSession | None = None, backoff: Backoff | None = None,
              read_timeout: float = 60.0, restream_after: float = 300.0,
              on_status: Callable[[Status], None] | None = None) -> Subscription:
    """Follow ``room`` on the chat server at ``url``: an async iterator of messages and resets.

    ``after``: None for only what is posted from now on, "earliest" for everything the server
    still holds first, or a message id to resume after it. The stream reconnects with
    ``Last-Event-ID`` after a drop, waiting as the server's ``retry:`` asks and backing off
    (capped, jittered, exponential; reset by a successful connection) while it cannot connect;
    when the stream is refused (not a 200 ``text/event-stream``) it long-polls instead, and tries
    the stream again after ``restream_after`` seconds. Messages come once each and in order.
    ``on_status`` is told of every change between connected and not, and of the transport.
    """
    return Subscription(url, room, after=after, session=session, backoff=backoff,
                        read_timeout=read_timeout, restream_after=restream_after,
                        on_status=on_status)
