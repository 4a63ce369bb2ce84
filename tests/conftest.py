"""Fixtures: short-timeout settings, a real test server, and helpers that speak the protocol.

Every test that uses ``app`` (so ``client``, ``chat``, ``feed``) runs once per store: the
memory store, the SQLite store on a file of the test's own, and the Redis store on a real
redis-server that the session starts on a free port. Without redis-server the Redis runs are
skipped, unless CHAT_REQUIRE_REDIS=1 (CI). A test that does not involve the store's behaviour
(forms, XSRF, limits, escaping, errors, the metrics format) runs on the memory store only:
``@one_store`` (tests/support), or a module's own ``store_url`` fixture.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient

from chat.feed import Feed
from chat.settings import Settings
from chat.web.app import create_app
from chat.web.keys import feed_key

from .support import FUZZ_EXAMPLES, TEST_SETTINGS, XSRF, Chat, FakeClock, sqlite_url
from .support.servers import REDIS_SERVER, RedisServer

# Property and fuzz tests (hypothesis). In make test: a fixed seed (derandomize) and each test's
# small budget, a few seconds in all. CHAT_FUZZ_EXAMPLES=N (make fuzz) gives each of them N
# examples from a random seed; a failure prints the seed and a @reproduce_failure blob.
_COMMON: dict[str, Any] = {
    "database": None, "deadline": None, "print_blob": True,
    # One server (fixture) serves every example of a test, on purpose: it must keep working.
    "suppress_health_check": [hypothesis.HealthCheck.function_scoped_fixture,
                              hypothesis.HealthCheck.too_slow],
}
hypothesis.settings.register_profile("fixed", derandomize=True, **_COMMON)
hypothesis.settings.register_profile("long", derandomize=False, **_COMMON)
hypothesis.settings.load_profile("long" if FUZZ_EXAMPLES else "fixed")


def need_redis() -> None:
    if REDIS_SERVER is None:
        if os.environ.get("CHAT_REQUIRE_REDIS") == "1":
            pytest.fail("CHAT_REQUIRE_REDIS=1 but redis-server is not on PATH")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session (no persistence, a free port)."""
    need_redis()
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    redis_server.flushall()
    return redis_server.url


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``Settings.store`` for this run: each app-level test runs on every store (SQLite: a new
    file of this test's own)."""
    if request.param == "memory":
        return "memory"
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "chat.db")
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
def settings() -> Settings:
    """The contract's defaults, with short timeouts and the abuse limits off (test_limits.py
    turns them on): many tests post or connect far faster than a person would."""
    return TEST_SETTINGS


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> Callable[[], float]:
    """The app's clock (limits, the metrics cache, presence): the real one, or a FakeClock that
    moves only when the test says (``@pytest.mark.fake_clock``)."""
    return FakeClock() if request.node.get_closest_marker("fake_clock") else time.monotonic


@pytest.fixture
async def app(settings: Settings, store_url: str, clock: Callable[[], float]) -> web.Application:
    return create_app(dataclasses.replace(settings, store=store_url), clock=clock)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, app: web.Application) -> TestClient[Any, Any]:
    # As python -m chat serves (chat.server.runner_options): request bodies are never inflated.
    server = TestServer(app)
    await server.start_server(auto_decompress=False)
    c: TestClient[Any, Any] = await aiohttp_client(server)
    c.session.cookie_jar.update_cookies({"_xsrf": XSRF})
    return c


@pytest.fixture
def feed(client: TestClient[Any, Any]) -> Feed:
    feed: Feed = client.app[feed_key]
    return feed


@pytest.fixture
def chat(client: TestClient[Any, Any]) -> Chat:
    return Chat(client)
