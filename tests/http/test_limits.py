"""Abuse limits and time limits at their edges; refusals are JSON, counted and logged."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import pytest

from chat.settings import Settings
from chat.web.keys import tokens_key
from chat.web.limits import Limits

from ..support import XSRF, Chat, FakeClock, ServerProcess, until, with_settings

PROXIED = with_settings(post_rate=0.5, post_burst=20, max_client_connections=3, max_clients=0,
                        trusted_proxies=("127.0.0.1",))


@pytest.fixture
def store_url() -> str:
    """The limits count requests and connections, not messages stored: one store for this module
    (conftest runs the store's own tests on each)."""
    return "memory"


def as_client(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def _post(chat: Chat, who: str, body: str = "x") -> tuple[int, dict[str, str], dict[str, str]]:
    response = await chat.client.post("/a/message/new", data={"body": body, "_xsrf": XSRF},
                                      headers=as_client(who))
    return response.status, dict(response.headers), await response.json()


# ---- posts: token bucket ----------------------------------------------------------------------

@pytest.mark.fake_clock
@pytest.mark.parametrize("settings", [PROXIED], ids=["burst-20"])
async def test_burst_edge_retry_after_and_other_clients(chat: Chat, clock: FakeClock,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    for i in range(20):
        status, _, _ = await _post(chat, "203.0.113.7", f"burst {i}")
        assert status == 200, i
    with caplog.at_level(logging.WARNING, logger="chat.limits"):
        status, headers, body = await _post(chat, "203.0.113.7", "the 21st")
    assert status == 429
    assert body == {"error": f"too many messages; wait {headers['Retry-After']} s"}
    wait = int(headers["Retry-After"])
    assert wait == 2  # 0.5 posts/s, and no time passed: the next token is 2 s away
    assert "event=refused reason=posts client=203.0.113.7" in caplog.text
    assert (await _post(chat, "198.51.100.9", "someone else"))[0] == 200
    assert "the 21st" not in [m["body"] for m in await chat.history()]
    clock.advance(wait)
    assert (await _post(chat, "203.0.113.7", "after waiting"))[0] == 200
    text = await (await chat.client.get("/metrics")).text()
    assert 'chat_rate_limited_total{reason="posts"} 1.0' in text


def test_token_bucket_with_a_clock() -> None:
    now = [100.0]
    limits = Limits(Settings(post_rate=5, post_burst=20), clock=lambda: now[0])
    assert [limits.take_post("a") for _ in range(20)] == [0.0] * 20
    assert limits.take_post("a") == pytest.approx(0.2)
    assert limits.take_post("b") == 0.0
    now[0] += 0.2
    assert limits.take_post("a") == 0.0
    assert limits.take_post("a") == pytest.approx(0.2)
    now[0] += 3600  # idle: the bucket is full again, never more than the burst
    assert [limits.take_post("a") for _ in range(20)] == [0.0] * 20
    assert limits.take_post("a") > 0


def test_idle_buckets_are_forgotten() -> None:
    now = [0.0]
    limits = Limits(Settings(post_rate=5, post_burst=20), clock=lambda: now[0])
    for i in range(5000):
        limits.take_post(f"10.0.{i // 256}.{i % 256}")
        now[0] += 0.01
    assert len(limits.posts._buckets) < 2100  # only those seen in the last few seconds remain


def test_post_rate_zero_is_off() -> None:
    limits = Limits(Settings(post_rate=0))
    assert all(limits.take_post("a") == 0 for _ in range(1000))


@pytest.mark.parametrize("peer, forwarded, proxies, client", [
    ("10.0.0.5", [], (), "10.0.0.5"),
    ("10.0.0.5", ["1.2.3.4"], (), "10.0.0.5"),  # untrusted peer: the header is ignored
    ("10.0.0.5", ["1.2.3.4"], ("10.0.0.0/8",), "1.2.3.4"),
    ("10.0.0.5", ["6.6.6.6, 1.2.3.4, 10.0.0.9"], ("10.0.0.0/8",), "1.2.3.4"),  # nearest untrusted
    ("10.0.0.5", ["10.0.0.7"], ("10.0.0.0/8",), "10.0.0.5"),
    ("::1", ["2001:db8::1"], ("::1",), "2001:db8::/64"),  # IPv6: keyed by its /64
    ("10.0.0.5", [" , "], ("10.0.0.0/8",), "10.0.0.5"),
    # Every header line, read from the right: a line the client sent ahead of the proxy's
    # cannot name it (HAProxy and others add a line of their own).
    ("10.0.0.5", ["6.6.6.6", "1.2.3.4"], ("10.0.0.0/8",), "1.2.3.4"),
    ("10.0.0.5", ["6.6.6.6", "1.2.3.4, 10.0.0.9"], ("10.0.0.0/8",), "1.2.3.4"),
    # A hop that is not an address: the whole header is ignored, the peer counts.
    ("10.0.0.5", ["1.2.3.4 user=root", "5.6.7.8"], ("10.0.0.0/8",), "10.0.0.5"),
    ("10.0.0.5", ["1.2.3.4, junk"], ("10.0.0.0/8",), "10.0.0.5"),
    ("10.0.0.5", ["unknown"], ("10.0.0.0/8",), "10.0.0.5"),
    ("2001:db8:1:2:3:4:5:6", [], (), "2001:db8:1:2::/64"),
    ("::ffff:192.0.2.1", [], (), "192.0.2.1"),  # IPv4-mapped: the IPv4 address
])
def test_client_identity(peer: str, forwarded: list[str], proxies: tuple[str, ...],
                         client: str) -> None:
    assert Limits(Settings(trusted_proxies=proxies)).client(peer, forwarded) == client


# ---- streams and polls: concurrency -------------------------------------------------------------

@pytest.mark.parametrize("settings", [PROXIED], ids=["3-per-client"])
async def test_connections_per_client(chat: Chat) -> None:
    streams = [chat.stream(headers=as_client("203.0.113.7")) for _ in range(3)]
    for s in streams:
        await s.__aenter__()
        await s.read_frame()
    refused = await chat.client.get("/a/message/stream", headers=as_client("203.0.113.7"))
    assert refused.status == 429 and refused.content_type == "application/json"
    assert refused.headers["Retry-After"] == "1"
    assert "at most 3" in (await refused.json())["error"]
    poll = await chat.client.post("/a/message/updates", data={"_xsrf": XSRF},
                                  headers=as_client("203.0.113.7"))
    assert poll.status == 429
    chat.client.session.cookie_jar.clear()  # a client without the page's cookie: its address
    other = chat.stream(headers=as_client("198.51.100.9"))
    await other.__aenter__()
    assert await other.read_frame()
    await streams[0].__aexit__()
    await chat.until_metric("chat_stream_clients", 3)
    chat.client.session.cookie_jar.update_cookies({"_xsrf": XSRF})
    again = chat.stream(headers=as_client("203.0.113.7"))
    await again.__aenter__()
    assert await again.read_frame()
    for s in [*streams[1:], other, again]:
        await s.__aexit__()
    text = await (await chat.client.get("/metrics")).text()
    assert 'chat_rate_limited_total{reason="client_connections"} 2.0' in text


BROWSERS = with_settings(max_client_connections=2, max_address_streams=5, trusted_proxies=(
    "127.0.0.1",))


@pytest.mark.parametrize("settings", [BROWSERS], ids=["2-per-browser-5-per-address"])
async def test_streams_count_per_browser_and_generously_per_address(chat: Chat) -> None:
    """Browsers behind one address (an office NAT) each get their own cap; the address as a
    whole gets a larger one. A browser is its signed cookie: a made-up one is no browser."""
    tokens = chat.client.app[tokens_key]
    office = as_client("203.0.113.7")
    opened = []

    async def stream(cookie: str | None) -> int:
        headers = {**office, **({"Cookie": f"_xsrf={cookie}"} if cookie else {})}
        chat.client.session.cookie_jar.clear()
        response = await chat.client.get("/a/message/stream", headers=headers)
        if response.status == 200:
            opened.append(response)
        return response.status

    alice, bob, carol = tokens.mint(), tokens.mint(), tokens.mint()
    assert [await stream(alice) for _ in range(3)] == [200, 200, 429]  # per browser
    assert [await stream(bob) for _ in range(2)] == [200, 200]  # another browser, same address
    assert await stream("made-up-token") == 200  # not ours: counts as the address itself
    assert await stream(carol) == 429  # the address is at 5
    for response in opened:
        response.close()
    await chat.until_metric("chat_stream_clients", 0)
    assert await stream(carol) == 200
    for response in opened[-1:]:
        response.close()
    text = await (await chat.client.get("/metrics")).text()
    assert 'chat_rate_limited_total{reason="client_connections"} 1.0' in text
    assert 'chat_rate_limited_total{reason="address_streams"} 1.0' in text


@pytest.mark.parametrize("settings", [with_settings(max_clients=2)], ids=["2-per-process"])
async def test_process_wide_cap_is_503(chat: Chat) -> None:
    async with chat.stream() as a, chat.stream() as b:
        await a.read_frame()
        await b.read_frame()
        refused = await chat.client.get("/a/message/stream")
        assert refused.status == 503 and refused.headers["Retry-After"] == "1"
        assert (await refused.json()) == {"error": "the server is full; try again shortly"}
        assert "text/event-stream" not in refused.headers.get("Content-Type", "")
        assert (await chat.client.get("/")).status == 200  # pages and posts still work
        assert (await chat.post("still posting"))["body"] == "still posting"
    await chat.until_metric("chat_stream_clients", 0)
    async with chat.stream() as c:
        assert await c.read_frame()


async def test_open_connections_gauge(chat: Chat) -> None:
    async with chat.stream() as s:
        await s.read_frame()
        assert await chat.metric("chat_open_connections") >= 2  # the stream and this scrape


# ---- time limits --------------------------------------------------------------------------------

@pytest.mark.parametrize("settings", [with_settings(body_timeout=0.3)], ids=["body-0.3s"])
async def test_body_sent_byte_by_byte_times_out_with_408(chat: Chat) -> None:
    server = chat.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    body = f"_xsrf={XSRF}&body=slow".encode()
    writer.write(b"POST /a/message/new HTTP/1.1\r\nHost: x\r\nCookie: _xsrf=" + XSRF.encode() +
                 b"\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body))
    for byte in body[:5]:
        writer.write(bytes([byte]))
        await asyncio.sleep(0.1)
    reply = await asyncio.wait_for(reader.readuntil(b"}"), 5)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"\r\nConnection: close\r\n" in reply  # the rest of the body is never read
    assert reply.endswith(b'{"error": "the request body did not arrive within 0.3 s"}')
    assert await chat.history() == []


async def test_slowloris_headers_and_frozen_reader_are_dropped_while_others_keep_receiving() -> None:
    """Against the production start path, where the keep-alive timeout is set."""
    args = ("--keepalive-timeout", "1", "--stall-timeout", "2", "--queue-size", "100000",
            "--max-body", "60000", "--max-request", "1000000", "--post-rate", "0",
            "--ping-interval", "30")
    with ServerProcess(*args) as server:
        # A client that sends its request headers one byte a while.
        _, loris = await asyncio.open_connection("127.0.0.1", server.port)
        loris_started = time.monotonic()

        async def dribble() -> float:
            for byte in b"GET /a/message/stream HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100:
                try:
                    loris.write(bytes([byte]))
                    await loris.drain()
                except ConnectionError:
                    return time.monotonic() - loris_started
                await asyncio.sleep(0.1)
            return float("inf")

        dribbling = asyncio.create_task(dribble())
        # A reader that never reads, with a small receive window.
        _, frozen = await asyncio.open_connection(
            "127.0.0.1", server.port, limit=1024)
        frozen.transport.set_write_buffer_limits(0)
        frozen.write(b"GET /a/message/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        frozen.transport.pause_reading()  # type: ignore[attr-defined]
        # A normal reader.
        healthy_reader, healthy = await asyncio.open_connection("127.0.0.1", server.port,
                                                                limit=1 << 20)
        healthy.write(b"GET /a/message/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        await healthy_reader.readuntil(b": stream open\n\n")

        import aiohttp
        async with aiohttp.ClientSession(cookies={"_xsrf": XSRF}) as session:
            posted = 0

            async def post_and_receive() -> tuple[bool, bool]:
                """One big message, which the healthy client gets at once whatever the others
                do; then whether the frozen reader was dropped as stalled, and the loris."""
                nonlocal posted
                posted += 1
                async with session.post(server.url + "/a/message/new", data={
                        "_xsrf": XSRF, "body": f"{posted} " + "x" * 50_000}) as r:
                    assert r.status == 200
                    msg_id = (await r.json())["id"]
                frame = await asyncio.wait_for(healthy_reader.readuntil(b"\n\n"), 5)
                while b"event: presence" in frame:  # who is here (the others come and go)
                    frame = await asyncio.wait_for(healthy_reader.readuntil(b"\n\n"), 5)
                assert f"id: {msg_id}".encode() in frame
                async with session.get(server.url + "/metrics") as m:
                    text = await m.text()
                stalled = re.search(r'chat_clients_dropped_total\{reason="stalled"\} ([1-9])', text)
                return stalled is not None, dribbling.done()

            await until(post_and_receive, (True, True), 20)
        loris_gone = await asyncio.wait_for(dribbling, 5)
        assert loris_gone < 1 + 3, loris_gone  # the keep-alive timer, plus scheduling slack
        assert "event=dropped reason=stalled" in server.output()
        for w in (loris, frozen, healthy):
            w.close()


@pytest.mark.parametrize("settings", [with_settings(poll_timeout=1.0, keepalive_timeout=0.3)],
                         ids=["keepalive-shorter-than-poll"])
async def test_keepalive_timeout_never_cuts_a_waiting_poll(chat: Chat) -> None:
    assert await chat.poll(cursor="zz-1", room="quiet") == {}
