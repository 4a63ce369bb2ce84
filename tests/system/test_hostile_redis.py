"""Redis under hostile load, against a real ``python -m chat --store redis://...``: reads write
nothing, and a Redis that refuses writes (maxmemory, noeviction) is a 503 and one log line per
failure, never a 500 with a traceback, while /healthz says 503."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Iterator

import aiohttp
import pytest

from ..support import GET_HEALTHZ, XSRF, ServerProcess, form_request, raw_exchange
from ..support.servers import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    redis_server.flushall()
    yield redis_server
    with redis_server.client() as client:  # as the other tests expect it
        client.config_set("maxmemory", "0")


def keys(redis: RedisServer) -> set[bytes]:
    with redis.client() as client:
        return set(client.keys("*"))


async def test_2000_page_views_of_fresh_rooms_create_no_key(redis: RedisServer) -> None:
    with ServerProcess("--store", redis.url, "--request-rate", "0") as server:
        async with aiohttp.ClientSession() as session:
            async with session.get(server.url + "/rooms/warm-up") as response:
                assert response.status == 200
            before = keys(redis)  # the deployment's own: chat:epoch, chat:secret

            async def view(n: int) -> None:
                async with session.get(f"{server.url}/rooms/fresh-{n}") as response:
                    assert response.status == 200

            for start in range(0, 2000, 50):
                await asyncio.gather(*(view(n) for n in range(start, start + 50)))
        assert keys(redis) == before, keys(redis) - before
        assert before <= {b"chat:epoch", b"chat:secret"}


def test_a_redis_at_maxmemory_is_503_with_one_log_line_per_failure(redis: RedisServer) -> None:
    with ServerProcess("--store", redis.url, "--post-rate", "0") as server:
        def post(room: str) -> tuple[int, dict[str, str], bytes]:
            form = urllib.parse.urlencode({"_xsrf": XSRF, "body": "hi", "room": room}).encode()
            reply = raw_exchange(server.port, form_request(
                "/a/message/new", form, extra=b"Connection: close\r\n"))
            return reply.status, reply.headers, reply.body

        assert post("old")[0] == 200
        assert raw_exchange(server.port, GET_HEALTHZ).status == 200
        with redis.client() as client:
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", "1")  # over it at once: every write is refused
        failures = 0
        for room in ["old", "new", "old", "other"]:
            status, headers, body = post(room)
            assert (status, headers["retry-after"]) == (503, "1"), body
            assert body == b'{"error": "the message store is unavailable; try again shortly"}'
            failures += 1
        health = raw_exchange(server.port, GET_HEALTHZ)
        assert (health.status, health.body) == (503, b"store unavailable")
        # Reads still work: the page of a room Redis holds, and its long-poll.
        page = raw_exchange(server.port, b"GET /rooms/old HTTP/1.1\r\nHost: x\r\n"
                                         b"Connection: close\r\n\r\n")
        assert page.status == 200 and b"hi" in page.body
        poll = raw_exchange(server.port, form_request(
            "/a/message/updates", f"_xsrf={XSRF}&room=old".encode(),
            extra=b"Connection: close\r\n"))
        assert poll.status == 200 and b'"body":"hi"' in poll.body
        log = server.output()
        lines = [line for line in log.splitlines() if "event=store_unavailable" in line]
        assert len(lines) == failures, log
        assert all("maxmemory" in line and "method=POST" in line for line in lines), lines
        assert "Traceback" not in log and " ERROR " not in log, log

        with redis.client() as client:
            client.config_set("maxmemory", "0")
        assert post("old")[0] == 200
        assert raw_exchange(server.port, GET_HEALTHZ).status == 200
