"""App cleanup ends open streams and pending polls at once, not after the 60 s default."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from chat.core.hub import Hub
from chat.settings import Settings
from chat.web.app import create_app
from chat.web.keys import feed_key

from ..support import XSRF, until, with_settings, without_control


async def _counts(hub: Hub) -> tuple[int, int]:
    return hub.stream_clients, hub.poll_waiters


@pytest.mark.parametrize("settings", [with_settings(shutdown_timeout=60.0, poll_timeout=60.0)],
                         ids=["waits-up-to-60s"])
async def test_cleanup_ends_streams_and_polls_cleanly(aiohttp_server: AiohttpServer,
                                                      settings: Settings) -> None:
    server = await aiohttp_server(create_app(settings))
    url = str(server.make_url("/a/message"))
    async with aiohttp.ClientSession(cookies={"_xsrf": XSRF},
                                     connector=aiohttp.TCPConnector(limit=0)) as session:
        async def stream() -> bytes:
            async with session.get(url + "/stream", params={"last_event_id": "earliest"}) as r:
                return await r.read()  # returns only when the server ends the body cleanly

        async def poll() -> bytes:
            async with session.post(url + "/updates", data={"_xsrf": XSRF}) as r:
                return await r.read()

        streams = [asyncio.create_task(stream()) for _ in range(20)]
        polls = [asyncio.create_task(poll()) for _ in range(20)]
        hub = server.app[feed_key].hub
        await until(lambda: _counts(hub), (20, 20))
        started = time.monotonic()
        await server.close()
        took = time.monotonic() - started
        bodies = await asyncio.gather(*streams, *polls)
    # Shutdown ran our on_shutdown, not the 60 s grace period.
    assert took < 30, took
    assert all(without_control(b) == b"retry: 1000\n: stream open\n\n" for b in bodies[:20])
    assert all(b == b"{}" for b in bodies[20:])


async def test_cleanup_context_stops_the_heartbeat_task(aiohttp_server: AiohttpServer) -> None:
    app: web.Application = create_app(with_settings())
    server = await aiohttp_server(app)
    before = {t.get_coro().__qualname__ for t in asyncio.all_tasks()}  # type: ignore[union-attr]
    assert "Hub.run" in before
    await server.close()
    await asyncio.sleep(0)
    after = {t.get_coro().__qualname__ for t in asyncio.all_tasks()}  # type: ignore[union-attr]
    assert "Hub.run" not in after
