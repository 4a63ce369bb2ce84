"""What only the Redis store has: its data layout, lost streams, several processes, outages.

"Processes" here are apps in this test's event loop, each with its own RedisStore, Redis
connections and reader task; tests/system/test_scale_out.py runs real separate processes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from chat.core.history import History
from chat.core.hub import Hub
from chat.feed import Feed
from chat.presence import Rooms
from chat.settings import Settings
from chat.stores.base import StoreUnavailable
from chat.stores.redis.scripts import EPOCH_KEY, ROOMS_KEPT, ROOMS_KEY, meta_key, stream_key
from chat.stores.redis.store import RedisStore
from chat.web.app import create_app
from chat.web.keys import feed_key

from ..support import XSRF, Chat, free_port, position, until, with_settings, zero_cursor
from ..support.servers import RedisServer, TcpProxy

pytestmark = pytest.mark.redis

OPENING = b"retry: 1000\n: stream open\n\n"
# Short limits so outages are noticed, and left, quickly.
FAST: dict[str, Any] = {"redis_timeout": 0.5, "redis_backoff": 0.2}

Connect = Callable[..., Awaitable[Chat]]


@pytest.fixture
def store_url(redis_url: str) -> str:
    """Only the Redis store here (conftest runs the shared tests on both)."""
    return redis_url


@pytest.fixture
async def r(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def connect(aiohttp_client: AiohttpClient, settings: Settings, redis_url: str) -> Connect:
    """Another server process's worth of app on the same (or another) Redis URL."""

    async def make(url: str = redis_url, **changes: Any) -> Chat:
        app = create_app(dataclasses.replace(settings, store=url, **changes))
        client: TestClient[Any, Any] = await aiohttp_client(app)
        client.session.cookie_jar.update_cookies({"_xsrf": XSRF})
        return Chat(client)

    return make


async def test_data_layout(chat: Chat, r: aioredis.Redis) -> None:
    message = await chat.post("hello", name="ann")
    epoch = message["id"].split("-")[0]
    store_id, started = epoch[:6], int(epoch[6:], 36)
    assert await r.get(EPOCH_KEY) == store_id.encode()
    [(entry_id, fields)] = cast(list[tuple[bytes, dict[bytes, bytes]]],
                                await r.xrange(stream_key("main")))
    assert entry_id.decode() == f"{started}-1"
    assert fields == {b"e": epoch.encode(), b"b": b"hello", b"n": b"ann",
                      b"t": repr(message["ts"]).encode()}
    assert message["id"] == f"{epoch}-1"
    assert await r.hgetall(meta_key("main")) == {b"e": epoch.encode(),
                                                 b"t": str(started).encode(), b"n": b"1"}
    week = 7 * 86400 * 1000
    assert week - 60_000 < await r.pttl(meta_key("main")) <= week
    assert week - 60_000 < await r.pttl(stream_key("main")) <= week
    anonymous = await chat.post("no name")
    assert cast(list[Any], await r.xrange(stream_key("main")))[1][1][b"n"] == b""
    assert anonymous["name"] is None


async def test_reading_an_empty_room_writes_nothing(chat: Chat, r: aioredis.Redis) -> None:
    """Pages, polls and streams of an empty room store nothing. A poll or a stream is someone
    in the room: presence (a key that expires within seconds) and its notice say so."""
    before = sorted(await r.keys("*"))
    assert (await chat.client.get("/rooms/fresh")).status == 200
    assert sorted(await r.keys("*")) == before
    assert await chat.poll(room="fresh", cursor="zz-1") == {}
    async with chat.stream(room="fresh", last_event_id="earliest") as s:
        await s.read_bytes(len(OPENING))
        # Someone is in the room: a presence key that expires within three renewals (15 s).
        await until(lambda: r.exists(b"chat:{fresh}:p"), 1, 5)
        assert 0 < await r.pttl(b"chat:{fresh}:p") <= 15_000
    await until(lambda: r.exists(b"chat:{fresh}:p"), 0, 5)  # and nobody once the stream left
    after = sorted(k for k in await r.keys("*") if b"wake" not in k and k != b"chat:notices")
    assert after == before


@pytest.mark.parametrize("settings", [with_settings(history=5, retain_messages=5)],
                         ids=["retain-5"])
async def test_stream_is_capped_near_retain_messages(chat: Chat, r: aioredis.Redis) -> None:
    for i in range(300):
        await chat.post(f"m{i}")
    # MAXLEN ~ trims whole nodes of 100 entries: between 5 and about 105 remain, never 300.
    assert 5 <= await r.xlen(stream_key("main")) <= 110
    assert len(await chat.history()) == 5


@pytest.mark.parametrize("settings", [with_settings(retain_days=0.00003)], ids=["2.6s"])
async def test_retain_days_trims_on_post_and_bounds_the_room_ttl(chat: Chat,
                                                                 r: aioredis.Redis) -> None:
    retain = 0.00003 * 86400
    old = [await chat.post(f"old{i}") for i in range(3)]
    assert 0 < await r.pttl(stream_key("main")) <= retain * 1000  # sooner than --room-ttl
    await asyncio.sleep(retain / 2)
    mid = await chat.post("mid")  # the room lives on: retain after this post
    await asyncio.sleep(retain / 2 + 0.3)
    new = await chat.post("new")  # the three old ones have expired: this post trims them
    entries = cast(list[tuple[bytes, Any]], await r.xrange(stream_key("main")))
    assert [e[0].decode().split("-")[1] for e in entries] == ["4", "5"]
    async with chat.stream(last_event_id=old[0]["id"]) as s:
        await s.read_bytes(len(OPENING))
        assert (await s.read_event())["data"] == '{"reason": "evicted"}'
        assert [m["id"] for m in await s.messages(2)] == [mid["id"], new["id"]]


async def test_flushall_makes_old_cursors_reset_and_live_streams_go_on(
        chat: Chat, r: aioredis.Redis) -> None:
    old = await chat.post("before")
    async with chat.stream() as live:
        await live.read_bytes(len(OPENING))
        await r.flushall()
        new = await chat.post("after")
        assert new["id"].split("-")[0] != old["id"].split("-")[0]
        assert (await live.read_event())["id"] == new["id"]
    async with chat.stream(last_event_id=old["id"]) as resumed:
        await resumed.read_bytes(len(OPENING))
        assert await resumed.read_event() == {"id": zero_cursor(new["id"]), "event": "reset",
                                              "data": '{"reason": "epoch"}'}
        assert (await resumed.read_event())["id"] == new["id"]
    assert await chat.poll(cursor=old["id"]) == {"messages": [new], "reset": True}


async def test_expired_room_starts_a_new_epoch(chat: Chat, r: aioredis.Redis) -> None:
    old = await chat.post("before")
    await r.delete(stream_key("main"), meta_key("main"))  # what --room-ttl does
    new = await chat.post("after")
    assert new["id"].split("-")[0] != old["id"].split("-")[0]
    assert await chat.poll(cursor=old["id"]) == {"messages": [new], "reset": True}


async def test_every_process_delivers_every_message_once_in_order(connect: Connect) -> None:
    a, b = await connect(), await connect()
    async with a.stream(room="r") as on_a, b.stream(room="r") as on_b:
        await on_a.read_bytes(len(OPENING))
        await on_b.read_bytes(len(OPENING))
        posted = [(await (a if i % 2 else b).post(f"m{i}", room="r"))["id"] for i in range(30)]
        assert [m["id"] for m in await on_a.messages(30)] == posted
        assert [m["id"] for m in await on_b.messages(30)] == posted
    # Each process counts what it accepted, and delivered all 30 to its own stream.
    assert [await c.metric("chat_messages_published_total") for c in (a, b)] == [15, 15]
    assert [await c.metric("chat_deliveries_total") for c in (a, b)] == [30, 30]


async def test_the_room_list_has_every_process_s_rooms(connect: Connect,
                                                       r: aioredis.Redis) -> None:
    """A room posted to through one process is listed by another that serves nobody in it
    (each process shares its rooms once a second; neither watches these rooms)."""
    a, b = await connect(), await connect()
    older = await a.post("first", room="elsewhere")
    newer = await b.post("second", room="here")
    both = [("here", 0, newer["ts"]), ("elsewhere", 0, older["ts"])]
    await until(a.rooms, both)
    await until(b.rooms, both)
    assert await r.zrevrange(ROOMS_KEY, 0, -1, withscores=True) == [
        (b"here", newer["ts"]), (b"elsewhere", older["ts"])]


async def test_the_room_list_counts_people_on_other_processes(connect: Connect) -> None:
    a, b = await connect(), await connect()
    posted = await a.post("anyone?", room="busy")
    async with a.stream(room="busy", name="alice") as s, a.stream(room="busy") as unnamed:
        await s.read_bytes(len(OPENING))
        await unnamed.read_bytes(len(OPENING))
        await until(b.rooms, [("busy", 2, posted["ts"])])  # b watches nobody there: a's count


async def test_the_room_list_in_redis_keeps_the_newest_rooms_only(chat: Chat,
                                                                  r: aioredis.Redis) -> None:
    for i in range(ROOMS_KEPT + 20):
        await chat.post("hi", room=f"r{i}")
    # Shared once a second: the newest is in once the last second's posts are.
    await until(lambda: r.zrevrange(ROOMS_KEY, 0, 0), [f"r{ROOMS_KEPT + 19}".encode()])
    assert await r.zcard(ROOMS_KEY) == ROOMS_KEPT
    assert await r.zscore(ROOMS_KEY, "r19") is None  # the 20 oldest are gone
    assert await r.zscore(ROOMS_KEY, "r20") is not None


async def test_a_room_list_redis_refuses_waits_within_bounds(chat: Chat,
                                                              r: aioredis.Redis) -> None:
    """Redis takes posts but refuses the room list (an ACL without ZADD): the rooms waiting to be
    shared stay within ROOMS_KEPT, and go to Redis once it takes them again."""
    store = cast(RedisStore, chat.client.app[feed_key].store)
    await r.execute_command("ACL", "SETUSER", "default", "-zadd")  # type: ignore[no-untyped-call]
    try:
        for i in range(ROOMS_KEPT + 20):
            await chat.post("hi", room=f"r{i}")
        await until(lambda: len(store._posted), ROOMS_KEPT)  # after a refused share
        assert await r.exists(ROOMS_KEY) == 0
    finally:
        await r.execute_command("ACL", "SETUSER", "default", "+zadd")  # type: ignore[no-untyped-call]
    await until(lambda: r.zcard(ROOMS_KEY), ROOMS_KEPT)
    assert await r.zscore(ROOMS_KEY, "r19") is None and await r.zscore(ROOMS_KEY, "r20") is not None


@pytest.mark.parametrize("settings", [with_settings(room_ttl=1.5)], ids=["ttl-1.5s"])
async def test_an_expired_room_leaves_the_room_list(connect: Connect) -> None:
    a, b = await connect(), await connect()
    posted = await a.post("soon gone", room="brief")
    await until(b.rooms, [("brief", 0, posted["ts"])])
    await until(b.rooms, [], 5)  # its keys expired with --room-ttl


async def test_resume_on_a_process_whose_reader_is_behind_repeats_nothing(
        connect: Connect, redis_server: RedisServer) -> None:
    """A client got message m from B and resumes on A before A's reader has read m: A neither
    replays m nor lets the reader send m afterwards (the client stays off the direct path until
    A's reader has passed m). A's reader is held back for real: its Redis connection goes
    through a proxy that stalls it."""
    proxy = TcpProxy(redis_server.port)
    await proxy.up()
    try:
        a = await connect(f"redis://127.0.0.1:{proxy.port}/0")
        b = await connect()
        async with a.stream(room="r") as watcher:  # A's reader now reads room r
            await watcher.read_bytes(len(OPENING))
            seen = await b.post("seen on B", room="r")
            assert (await watcher.read_event())["id"] == seen["id"]
            proxy.stall(await _reader_port(redis_server, proxy))
            m = await b.post("m", room="r")
            resumed = a.stream(room="r", last_event_id=m["id"])
            await resumed.__aenter__()
            try:
                await resumed.read_bytes(len(OPENING))
                proxy.release()
                assert (await watcher.read_event())["id"] == m["id"]
                nxt = await b.post("next", room="r")
                assert (await resumed.read_event())["id"] == nxt["id"]
            finally:
                await resumed.__aexit__(None, None, None)
    finally:
        await proxy.close()


async def _reader_port(server: RedisServer, proxy: TcpProxy) -> int:
    """The proxy's upstream port of the connection blocked in XREAD: A's reader."""
    async with aioredis.from_url(server.url) as r:
        for _ in range(100):
            for client in await r.client_list():
                port = int(client["addr"].rsplit(":", 1)[1])
                if client["cmd"] == "xread" and port in proxy.upstream_ports():
                    return port
            await asyncio.sleep(0.02)
    raise AssertionError("A's reader is not blocked in XREAD")


async def test_outage_503s_then_open_streams_catch_up_without_loss_or_repeat(
        connect: Connect, redis_server: RedisServer) -> None:
    """A loses Redis (its proxy is cut) while B keeps accepting: A answers 503 everywhere, its
    open stream stays open, and once Redis is back it gets B's messages, once each, in order."""
    proxy = TcpProxy(redis_server.port)
    await proxy.up()
    try:
        a = await connect(f"redis://127.0.0.1:{proxy.port}/0", **FAST)
        b = await connect()
        async with a.stream(room="r", last_event_id="earliest") as s:
            await s.read_bytes(len(OPENING))
            before = await a.post("before", room="r")
            assert (await s.read_event())["id"] == before["id"]

            await proxy.down()
            refused = await a.post_raw("during", room="r")
            assert refused.status == 503
            assert "store is unavailable" in (await refused.json())["error"]
            assert refused.headers["Retry-After"] == "1"
            assert (await a.client.get("/healthz")).status == 503
            assert (await a.client.get("/rooms/r")).status == 503
            new_stream = await a.client.get("/a/message/stream", params={"room": "r"})
            assert (new_stream.status, new_stream.content_type) == (503, "application/json")
            poll = await a.client.post("/a/message/updates", data={"_xsrf": XSRF, "room": "r"})
            assert poll.status == 503
            meanwhile = [(await b.post(f"q{i}", room="r"))["id"] for i in range(5)]

            await proxy.up()
            assert [m["id"] for m in await s.messages(5, timeout=10)] == meanwhile
            await until(lambda: _status(a, "/healthz"), 200)
            after = await a.post("after", room="r")
            assert (await s.read_event())["id"] == after["id"]
        history = [m["body"] for m in await b.history("r")]
        assert history == ["before", "q0", "q1", "q2", "q3", "q4", "after"]
    finally:
        await proxy.close()


async def test_publish_that_reaches_a_stalled_redis_late_stores_nothing(
        connect: Connect, redis_server: RedisServer, r: aioredis.Redis) -> None:
    proxy = TcpProxy(redis_server.port)
    await proxy.up()
    try:
        a = await connect(f"redis://127.0.0.1:{proxy.port}/0", **FAST)
        b = await connect()
        await a.post("first", room="r")
        proxy.stall()
        scripts = await _script_calls(r)
        started = time.monotonic()
        response = await a.post_raw("stalled", room="r")
        assert response.status == 503
        # The timing is the contract: a 503 after --redis-timeout (0.5 s), not a hang; the
        # bound is generous for a busy machine.
        assert time.monotonic() - started < 2
        proxy.release()  # the script reaches Redis now, after its deadline

        async def ran() -> bool:
            return await _script_calls(r) > scripts

        await until(ran, True)  # and Redis has run it
        await until(lambda: _status(a, "/healthz"), 200)
        await a.post("last", room="r")
        assert [m["body"] for m in await b.history("r")] == ["first", "last"]
    finally:
        await proxy.close()


async def test_unreachable_redis_at_startup_is_one_clear_error(settings: Settings) -> None:
    port = free_port()  # nothing listens there
    store = RedisStore(dataclasses.replace(settings, store=f"redis://127.0.0.1:{port}/0", **FAST),
                       lambda *_: "")
    hub = Hub(10)
    rooms = Rooms(store, hub, grace=1, max_names=10, typing_seconds=5)
    feed = Feed(store, History(10, 1 << 20, authoritative=False), hub, rooms, page_size=10,
                max_reply_bytes=1 << 20)
    with pytest.raises(StoreUnavailable, match=f"^cannot reach Redis at redis://127.0.0.1:{port}/0: "):
        await store.open(feed)


async def test_ids_of_two_processes_interleave_in_one_order(connect: Connect) -> None:
    a, b = await connect(), await connect()
    ids = [(await (a if i % 2 else b).post(f"m{i}", room="r"))["id"] for i in range(20)]
    assert [position(i) for i in ids] == sorted(position(i) for i in ids)
    assert [m["id"] for m in await a.history("r")] == ids == [m["id"] for m in await b.history("r")]


async def _script_calls(r: aioredis.Redis) -> int:
    """How many scripts this Redis has run (the publish is one)."""
    stats = await r.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))


async def _status(chat: Chat, path: str) -> int:
    return (await chat.client.get(path)).status


@pytest.mark.parametrize("settings", [with_settings(history=3, retain_messages=3)],
                         ids=["history-3-retain-3"])
async def test_a_cursor_older_than_ram_resumes_from_redis_until_trimmed(chat: Chat) -> None:
    """RAM holds the newest 3; Redis keeps more (MAXLEN ~ trims whole nodes of 100 entries)."""
    ids = [(await chat.post(f"m{i}"))["id"] for i in range(6)]
    reply = await chat.poll(cursor=ids[1])  # at most --history messages an answer
    assert ("reset" in reply, [m["id"] for m in reply["messages"]]) == (False, ids[2:5])
    events = await _stream_events(chat, ids[0], 5)
    assert [(e["event"], e["id"]) for e in events] == [("message", i) for i in ids[1:]]
    for i in range(6, 250):  # past a whole node: the oldest ones are trimmed now
        ids.append((await chat.post(f"m{i}"))["id"])
    reply = await chat.poll(cursor=ids[0])
    assert reply["reset"] is True and reply["messages"][-1]["id"] == ids[-1]
    events = await _stream_events(chat, ids[0], 1)
    assert (events[0]["event"], json.loads(events[0]["data"])) == ("reset", {"reason": "evicted"})


async def _stream_events(chat: Chat, cursor: str, n: int) -> list[dict[str, Any]]:
    async with chat.stream(last_event_id=cursor) as s:
        await s.read_bytes(len(OPENING))
        return [await s.read_event() for _ in range(n)]
