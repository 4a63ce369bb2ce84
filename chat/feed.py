"""The feed: where a store's history meets this process's clients. The replay rule lives here.

The rule, for both transports, is: **subscribe first, then read after the cursor, skip what was
already sent, then go live.**

- A stream subscribes to the hub before it reads, so a message accepted while it reads waits
  in its queue; the queue skips what the replay already sent (``Subscriber.after``), and the
  hub writes to the client directly only once RAM has everything up to what it was sent.
- A long-poll registers its waiter before it looks, so a message accepted while it looks still
  wakes it.
- A read is answered from RAM (``History``) when the cursor falls inside the room's window,
  otherwise from the store; concurrent identical store reads share one call, and a store read
  for a room's newest messages also fills the room's window, so a crowd resuming at once (a
  restart, a deploy) costs the store about one read per room.
- Whether a cursor is trusted is decided by ``chat.core.ids.judge``, nowhere else.

Replies are capped at ``max_reply_bytes``: a long-poll client asks again from the last id it got,
and a stream sends the rest of its replay page by page as its socket drains.

The feed is also the stores' ``Listener``: each message a store accepts goes to RAM, then to the
hub. No aiohttp here: the web layer hands in transports and writes the opening itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from .core.history import History
from .core.hub import Hub, Sink, Subscriber
from .core.ids import EARLIEST, Room, empty_base, format_id, judge, order, parse
from .core.message import Message, frames, reset_frame
from .presence import Rooms
from .stores.base import Posted, Store, StoreUnavailable


class Replay(NamedTuple):
    """Messages after a cursor, oldest first.

    ``reset`` says why the cursor was not trusted (None if it was): ``messages`` are then the
    newest ones instead. ``base`` is a cursor just before ``messages``: a client that has it
    resumes from there. ``more``: the reply was capped and more messages follow the last one.
    """

    messages: list[Message]
    reset: str | None
    base: str
    more: bool = False

    @property
    def last_id(self) -> str:
        return self.messages[-1].id if self.messages else self.base


# How old the store's list of recent rooms (Store.recent) may be when the room list is made.
RECENT_SECONDS = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class ActiveRoom:
    """An active room: its people here, and the time of its newest message."""

    room: str
    count: int
    last_ts: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"room": self.room, "count": self.count, "last_ts": self.last_ts}


class Feed:
    def __init__(self, store: Store, history: History, hub: Hub, rooms: Rooms, *, page_size: int,
                 max_reply_bytes: int) -> None:
        self.store = store
        self.history = history
        self.hub = hub
        self.rooms = rooms  # presence and typing
        self.page_size = page_size  # how many messages a page or a reset shows: --history
        self.max_reply_bytes = max_reply_bytes
        self._reads: dict[tuple[str, int | None, int], asyncio.Future[tuple[Room, list[Message]]]] = {}
        self._priming: dict[str, asyncio.Future[None]] = {}
        # Store.recent and how many people are in those rooms, at most RECENT_SECONDS old.
        self._recent: list[tuple[str, float]] = []
        self._recent_counts: dict[str, int] = {}
        self._recent_due = 0.0
        self._recent_lock = asyncio.Lock()

    # ---- what a store tells us (chat.stores.base.Listener) -----------------------------------

    def accept(self, message: Message) -> None:
        if self.history.append(message):
            self.hub.deliver(message)

    def start(self, room: str, epoch: str, last: int) -> None:
        self.history.open(room, epoch, last)

    def forget(self, room: str) -> None:
        self.history.drop(room)

    def trim(self, room: str, floor: int) -> None:
        self.history.trim(room, floor)

    def watching(self, room: str) -> bool:
        return self.hub.watching(room)

    def typed(self, room: str, name: str, until: float) -> None:
        self.rooms.typed(room, name, until)

    def changed(self, room: str) -> None:
        self.rooms.changed(room)

    # ---- posting -------------------------------------------------------------------------

    async def publish(self, room: str, body: str, name: str | None,
                      client_key: str | None = None) -> Posted:
        posted = await self.store.publish(room, body, name, client_key)
        if not posted.replayed:
            self.hub.published += 1  # accepted here; the store hands it to every process's feed
        return posted

    # ---- reading -------------------------------------------------------------------------

    async def read(self, room: str, cursor: str | None, limit: int | None = None, *,
                   cap: bool = True) -> Replay:
        """Up to ``limit`` messages after ``cursor`` (None: the newest), within the reply cap
        (``cap``), and ``earliest``: the first of the newest ``limit``, paged from the oldest."""
        if cursor == EARLIEST:
            cursor = (await self.read(room, None, limit, cap=False)).base
        limit = limit or self.page_size
        found = self._from_ram(room, cursor, limit)
        if found is None and await self._prime(room):
            found = self._from_ram(room, cursor, limit)
        if found is None:
            found = await self._from_store(room, cursor, limit)
        if not cap:
            return found
        return self._capped(found, newest=cursor is None or found.reset is not None)

    def _from_ram(self, room: str, cursor: str | None, limit: int) -> Replay | None:
        w = self.history.window(room)
        if w is None or not self.store.connected:
            return None
        if cursor is None:
            if not w.complete and len(w) < limit:
                return None  # the store may hold more of the newest `limit`
            newest = w.newest(limit)
            return Replay(newest, None, format_id(w.epoch, newest[0].seq - 1 if newest else w.last))
        c = parse(cursor)
        if c is None or not w.covers(c.epoch, c.seq):
            return None
        return Replay(w.after(c.seq, limit), None, cursor, c.seq + limit < w.last)

    async def _from_store(self, room: str, cursor: str | None, limit: int) -> Replay:
        c = parse(cursor) if cursor is not None else None
        state, messages = await self._store_read(room, None if c is None else c.seq, limit)
        if cursor is not None:
            verdict = judge(cursor, state, self.store.store_id, self.store.now_ms(),
                            self.store.forgot_between)
            if verdict.reason is None:
                if c is not None and (state.epoch is None or c.epoch != state.epoch):
                    # An empty room's base, trusted: the history began after it was handed out.
                    if state.epoch is None:
                        return Replay([], None, cursor)
                    state, messages = await self._store_read(room, 0, limit)
                return Replay(messages, None, cursor, _more(messages, limit, state))
            state, messages = await self._store_read(room, None, limit)
            return Replay(messages, verdict.reason, self._base(state, messages))
        return Replay(messages, None, self._base(state, messages))

    def _base(self, state: Room, messages: list[Message]) -> str:
        if messages:
            return format_id(messages[0].epoch, messages[0].seq - 1)
        if state.epoch is None:
            return empty_base(self.store.store_id, state.asof or self.store.now_ms())
        return format_id(state.epoch, state.last)

    async def _store_read(self, room: str, after: int | None,
                          limit: int) -> tuple[Room, list[Message]]:
        """``store.read``, shared by every caller asking the same at the same time."""
        key = (room, after, limit)
        pending = self._reads.get(key)
        if pending is None:
            pending = self._reads[key] = asyncio.ensure_future(self.store.read(room, after, limit))
            pending.add_done_callback(lambda _: self._reads.pop(key, None))
        return await asyncio.shield(pending)

    async def _prime(self, room: str) -> bool:
        """Fill the room's window with its newest messages from the store, once for everyone
        asking now. False when there is nothing to fill (RAM is the store, or it is full)."""
        history = self.history
        w = history.window(room)
        if history.authoritative or (w is not None and (w.complete or len(w) >= self.page_size)):
            return False
        if w is None and not self.store.settled(room):
            return False  # no window to add to, and none may be started: a read would be wasted
        pending = self._priming.get(room)
        if pending is None:
            pending = self._priming[room] = asyncio.ensure_future(self._fill(room))
            pending.add_done_callback(lambda _: self._priming.pop(room, None))
        await asyncio.shield(pending)
        return True

    async def _fill(self, room: str) -> None:
        history, store = self.history, self.store
        generation, settled = history.generation, store.settled(room)
        state, messages = await store.read(room, None, self.page_size)
        if state.epoch is not None:
            history.prime(room, state.epoch, messages, state.last, state.floor,
                          create=settled and store.settled(room)
                          and generation == history.generation)

    def _capped(self, replay: Replay, newest: bool) -> Replay:
        """At most ``max_reply_bytes`` of messages (always at least one): the first ones after a
        cursor (the client asks again from the last), or the newest ones of a page or a reset
        (the base moves up to just before them)."""
        messages, budget, total = replay.messages, self.max_reply_bytes, 0
        order = range(len(messages) - 1, -1, -1) if newest else range(len(messages))
        for n, i in enumerate(order):
            total += len(messages[i].data)
            if total > budget and n:
                if newest:
                    kept = messages[i + 1:]
                    return replay._replace(messages=kept, base=format_id(kept[0].epoch,
                                                                         kept[0].seq - 1))
                return replay._replace(messages=messages[:i], more=True)
        return replay

    async def older(self, room: str, before: str | None, limit: int) -> tuple[Replay, bool]:
        """Scroll-back: up to ``limit`` messages just before the message ``before`` (None: the
        newest), and whether there are older ones still. A ``before`` that is malformed or of
        another history gets the newest page, with the reason in ``reset``."""
        if before is not None:
            c = parse(before)
            w = self.history.window(room)
            if c is not None and w is not None and c.epoch == w.epoch and w.floor < c.seq <= w.last:
                messages = w.before(c.seq, limit)
                first = messages[0].seq if messages else c.seq
                if first - 1 > w.floor or w.complete:  # RAM answers it whole
                    return Replay(messages, None, before), first - 1 > w.floor
            store = self.store
            state, messages = await store.older(room, "" if c is None else c.epoch,
                                                0 if c is None else c.seq, limit)
            verdict = judge(before, state, store.store_id, store.now_ms(), store.forgot_between)
            if verdict.reason in (None, "evicted"):  # evicted: nothing older is kept
                return (Replay(messages, None, before),
                        bool(messages) and messages[0].seq - 1 > state.floor)
            page = await self.read(room, None, limit)
            return page._replace(reset=verdict.reason), self._older_exist(room, page)
        page = await self.read(room, None, limit)
        return page, self._older_exist(room, page)

    def _older_exist(self, room: str, page: Replay) -> bool:
        """Are there messages before ``page``? Unsure (the store was not asked): yes."""
        c = parse(page.base)
        if c is None or c.seq == 0:
            return False
        w = self.history.window(room)
        if w is not None and w.epoch == c.epoch and w.complete:
            return c.seq > w.floor
        return True

    # ---- the rooms list ------------------------------------------------------------------

    async def active_rooms(self, limit: int) -> list[ActiveRoom]:
        """Up to ``limit`` rooms with messages in RAM or in the store's list of recent rooms, or
        people present: rooms with people in them first, then by their newest message, newest
        first. The store is asked at most once every RECENT_SECONDS, whatever the requests."""
        recent, counts = await self._recent_rooms(limit)
        last: dict[str, float | None] = dict(recent)
        for w in self.history:
            newest = w.newest(1)
            if newest:
                last[w.room] = max(newest[0].ts, last.get(w.room) or 0.0)
        present = self.rooms.present()
        for room in present:
            last.setdefault(room, None)
        found = [ActiveRoom(room, self.rooms.roster(room).count if room in present
                            else counts.get(room, 0), ts)
                 for room, ts in last.items()]
        return heapq.nlargest(limit, (r for r in found if r.count or r.last_ts is not None),
                              key=lambda r: (r.count > 0, r.last_ts or 0.0))

    async def _recent_rooms(self, limit: int) -> tuple[list[tuple[str, float]], dict[str, int]]:
        async with self._recent_lock:  # one caller asks the store; the others wait and share
            loop = self.hub.loop
            if loop.time() >= self._recent_due:
                try:
                    recent = await self.store.recent(limit)
                    # People in rooms not watched here (with Redis: on other processes).
                    rosters = await self.rooms.lookup([room for room, _ in recent])
                    self._recent_counts = {room: r.count for room, r in rosters.items()}
                    self._recent = recent
                except StoreUnavailable:
                    pass  # the list it gave last (and RAM) until it answers again
                self._recent_due = loop.time() + RECENT_SECONDS
            return self._recent, self._recent_counts

    # ---- long-poll -------------------------------------------------------------------------

    async def poll(self, room: str, cursor: str | None, wait: float,
                   name: str | None = None) -> Replay | None:
        """What ``/a/message/updates`` answers: messages after ``cursor`` now, or as soon as some
        arrive, or None after ``wait`` seconds (or at shutdown). An untrusted cursor's reset is kept
        until there is something to send with it. The poller is present (as ``name``) meanwhile."""
        await self.store.watch(room)
        counted = self.rooms.join(room, name)
        try:
            return await self._poll(room, cursor, wait)
        finally:
            self.rooms.leave(room, counted)

    async def _poll(self, room: str, cursor: str | None, wait: float) -> Replay | None:
        hub, loop = self.hub, self.hub.loop
        deadline = loop.time() + wait
        reset: str | None = None
        while not hub.closed:
            # Wait first, then look: a message accepted while we look still wakes us.
            woken = hub.wait(room)
            try:
                replay = await self.read(room, cursor)
                if replay.reset is not None:
                    reset, cursor = replay.reset, replay.base
                if replay.messages:
                    hub.deliveries += len(replay.messages)
                    return replay._replace(reset=reset)
                timer = loop.call_at(deadline, _expire, woken)  # one timer, not asyncio.timeout()
                try:
                    await woken
                finally:
                    timer.cancel()
            finally:
                timed_out = hub.unwait(room, woken)  # still registered: the timer woke us
            if timed_out:
                break
        return None

    # ---- streams -------------------------------------------------------------------------

    def subscribe(self, room: str, transport: Any, sink: Sink, chunked: bool,
                  name: str | None = None) -> Stream:
        return Stream(self, self.hub.subscribe(room, transport, sink, chunked), name)


def _more(messages: list[Message], limit: int, state: Room) -> bool:
    return len(messages) == limit and messages[-1].seq < state.last


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Stream:
    """One SSE client: subscribed from the start, then ``begin`` (the first replay page, read
    before any header is sent, so a store outage is still a 503), then ``run``."""

    def __init__(self, feed: Feed, sub: Subscriber, name: str | None) -> None:
        self.feed = feed
        self.sub = sub
        self.name = name
        self._more: str | None = None  # cursor to continue the replay from
        self._present = False
        self._counted: str | None = None  # the name presence counts this stream under

    async def begin(self, cursor: str | None) -> bytes:
        """The frames to send first: who is here, then a reset frame if the cursor is not
        trusted, and the first page of the replay. ``cursor``: None (live only), ``earliest``,
        or an id. From here the client counts as present."""
        feed, sub = self.feed, self.sub
        await feed.store.watch(sub.room)
        if cursor is None:
            if not feed.store.connected:
                raise StoreUnavailable("the store is out of reach; live messages cannot flow")
            w = feed.history.window(sub.room)
            sub.after = None if w is None else w.key
            out = []
        else:
            replay = await feed.read(sub.room, cursor)
            out = [] if replay.reset is None else [reset_frame(replay.reset, replay.base)]
            self._sent(replay)
            out.append(frames(replay.messages))
        self._counted = feed.rooms.join(sub.room, self.name)
        self._present = True
        return feed.rooms.frame(sub.room) + b"".join(out)

    def _sent(self, replay: Replay) -> None:
        self.feed.hub.deliveries += len(replay.messages)
        c = parse(replay.last_id)
        if c is not None:
            self.sub.after = order(c.epoch, c.seq)
        self._more = replay.last_id if replay.more else None

    async def run(self, drain: Callable[[], Awaitable[None]]) -> str:
        """The rest of the replay, page by page as the socket drains, then live until the hub
        ends the subscription; returns why it ended."""
        feed, sub = self.feed, self.sub
        while self._more is not None and sub.reason is None:
            await drain()
            replay = await feed.read(sub.room, self._more)
            if replay.reset is not None:  # the rest was evicted meanwhile: say so, as a resume would
                sub.write(reset_frame(replay.reset, replay.base))
            self._sent(replay)
            sub.write(frames(replay.messages))
        history = feed.history
        room = sub.room

        def caught_up(after: tuple[int, int]) -> bool:
            w = history.window(room)
            return w is not None and w.key >= after

        return await sub.pump(feed.hub, drain, caught_up)

    def close(self) -> None:
        self.feed.hub.unsubscribe(self.sub)
        if self._present:
            self._present = False
            self.feed.rooms.leave(self.sub.room, self._counted)
