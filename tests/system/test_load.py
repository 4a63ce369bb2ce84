"""Many clients at once: everyone gets every message once, in order; leavers leave nothing behind."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import aiohttp
import pytest

from ..support import XSRF, Chat, one_store, position, with_settings

STREAMS = POLLERS = 200
MESSAGES = 100


async def _stream_ids(session: aiohttp.ClientSession, url: str, opened: asyncio.Event) -> list[str]:
    ids: list[str] = []
    async with session.get(url + "/a/message/stream") as response:
        opened.set()
        async for line in response.content:
            if line.startswith(b"id: "):
                ids.append(line[4:-1].decode())
                if len(ids) == MESSAGES:
                    return ids
    return ids


async def _poll_ids(session: aiohttp.ClientSession, url: str, cursor: str,
                    opened: asyncio.Event) -> list[str]:
    ids: list[str] = []
    while len(ids) < MESSAGES:
        opened.set()
        async with session.post(url + "/a/message/updates",
                                data={"_xsrf": XSRF, "cursor": cursor}) as response:
            reply = json.loads(await response.read())
        for message in reply.get("messages", []):
            ids.append(message["id"])
            cursor = message["id"]
    return ids


@pytest.mark.parametrize("settings", [with_settings(poll_timeout=10)], ids=["poll-10s"])
async def test_200_streams_and_200_pollers_get_all_100_messages_in_order_once(chat: Chat) -> None:
    url = str(chat.client.make_url("")).rstrip("/")
    start = (await (await chat.client.get("/")).text()).split('data-cursor="')[1].split('"')[0]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, cookies={"_xsrf": XSRF}) as session:
        streams: list[asyncio.Task[list[str]]] = []
        polls: list[asyncio.Task[list[str]]] = []
        # Connect in batches: the test server listens with aiohttp's default backlog of 128, and
        # a burst beyond it costs SYN retransmits of 1 s and more (python -m chat uses 4096).
        for _ in range(0, STREAMS, 25):
            events = [asyncio.Event() for _ in range(50)]
            streams += [asyncio.create_task(_stream_ids(session, url, e)) for e in events[:25]]
            polls += [asyncio.create_task(_poll_ids(session, url, start, e)) for e in events[25:]]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 10)
        await chat.until_metric("chat_stream_clients", STREAMS, timeout=10)
        await chat.until_metric("chat_poll_waiters", POLLERS, timeout=10)
        posted: list[str] = []
        for burst in range(0, MESSAGES, 10):  # bursts, so pollers also get several at once
            replies = await asyncio.gather(*(chat.post(f"m{i}") for i in range(burst, burst + 10)))
            posted += sorted((r["id"] for r in replies), key=position)
        results = await asyncio.wait_for(asyncio.gather(*streams, *polls), 50)
    assert all(r == posted for r in results), [len(r) for r in results if r != posted][:5]
    await chat.until_metric("chat_stream_clients", 0)
    await chat.until_metric("chat_poll_waiters", 0)
    assert await chat.metric("chat_deliveries_total") == (STREAMS + POLLERS) * MESSAGES


@one_store
async def test_stream_disconnect_restores_gauge(chat: Chat) -> None:
    before = await chat.metric("chat_stream_clients")
    async with chat.stream() as s:
        await s.read_frame()
        assert await chat.metric("chat_stream_clients") == before + 1
    await chat.until_metric("chat_stream_clients", before, timeout=1.0)
    await chat.post("nobody listening")  # publishing to a room whose client left is harmless
    assert await chat.metric("chat_stream_clients") == before


@one_store
@pytest.mark.parametrize("settings", [with_settings(queue_size=5, max_body=60_000,
                                               max_request=1 << 20)], ids=["queue-5"])
async def test_frozen_reader_is_dropped_and_counted_while_others_keep_receiving(
        chat: Chat) -> None:
    host, port = chat.client.server.host, chat.client.server.port
    # A reader that never reads, with a tiny receive window so the server's socket fills fast.
    frozen = socket.socket()
    frozen.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    frozen.connect((host, port))
    frozen.sendall(b"GET /a/message/stream HTTP/1.1\r\nHost: x\r\n\r\n")
    frozen.setblocking(False)
    try:
        async with chat.stream() as healthy:
            await healthy.read_frame()
            await chat.until_metric("chat_stream_clients", 2)
            received: list[dict[str, Any]] = []
            big = "x" * 50_000
            n = 0
            while await chat.metric("chat_slow_clients_dropped_total") == 0:
                n += 1
                assert n < 2000, "the frozen reader was never dropped"
                await chat.post(f"{n} {big}")
                received += await healthy.messages(1)
            assert await chat.metric("chat_stream_clients") == 1
            after = await chat.post("after the drop")
            assert (await healthy.messages(1))[0]["id"] == after["id"]
            assert [m["body"].split()[0] for m in received] == [str(i) for i in range(1, n + 1)]
    finally:
        frozen.close()
