"""The load harness (bench/) counts right: no timing is asserted, only what arrived."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bench.accounting import account, percentile
from bench.clients import SECRET, SSESubscriber, Subscriber, make_body
from bench.run import Scenario, _storm_check, run
from chat.settings import Settings
from chat.web.app import create_app

from ..support import with_settings


@pytest.fixture
def store_url() -> str:
    """The harness's counting is under test, not the store: one store (conftest runs the store's
    own tests on each)."""
    return "memory"


def test_account_counts_loss_duplicates_and_order() -> None:
    sent = {b"e-1": (0, 10.0), b"e-2": (1, 11.0), b"e-3": (2, 12.0)}
    arrivals = [
        ([b"e-1", b"e-2", b"e-3"], [10.5, 11.5, 12.5]),  # all, in order
        ([b"e-1", b"e-1", b"e-3"], [10.1, 10.2, 12.1]),  # a duplicate, e-2 lost
        ([b"e-2", b"e-1", b"x-9"], [11.1, 11.2, 11.3]),  # out of order, e-3 lost, a stranger
    ]
    d = account(arrivals, sent, 3)
    assert (d.expected, d.delivered, d.lost) == (9, 7, 2)
    assert (d.duplicates, d.out_of_order, d.unknown) == (1, 1, 1)
    assert d.latencies == sorted(d.latencies) and len(d.latencies) == 7
    assert d.last_arrival == pytest.approx([1.2, 0.5, 0.5])  # e-1 reached the third late
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and percentile([], 99) is None


@pytest.mark.parametrize("kind", ["sse", "poll"])
async def test_tiny_run_delivers_everything_once(server: TestServer, kind: str) -> None:
    result = await run(Scenario(kind, subscribers=5, messages=3, rate=50.0, drain=5.0),
                       f"{server.host}:{server.port}", None)
    assert (result["expected"], result["delivered"]) == (15, 15)
    assert (result["lost"], result["duplicates"], result["out_of_order"]) == (0, 0, 0)
    assert result["posted"] == 3 and result["post_errors"] == 0


def test_storm_check_finds_gaps_and_duplicates() -> None:
    sent = {b"e-%d" % i: (i, float(i)) for i in range(5)}

    def client(ids: list[bytes], mark: int) -> Subscriber:
        sub = SSESubscriber("h:1", "r", lambda _: None)
        sub.ids, sub.mark = ids, mark
        return sub

    ok = client([b"e-0", b"e-1", b"e-2", b"e-3", b"e-4"], 2)  # cursor e-1, then e-2..e-4
    gap = client([b"e-0", b"e-1", b"e-3", b"e-4"], 2)  # e-2 never came
    dup = client([b"e-0", b"e-1", b"e-1", b"e-2", b"e-3", b"e-4"], 2)  # e-1 replayed again
    check = _storm_check([ok, gap, dup], sent)
    assert (check["storm_clients_with_gap"], check["storm_clients_with_dup"]) == (1, 1)


def test_bodies_have_the_length_and_bytes_asked_for() -> None:
    assert len(make_body(4096, "ascii")) == 4096 == len(make_body(4096, "ascii").encode())
    astral = make_body(4096, "astral")
    assert len(astral) == 4096 and len(astral.encode()) == 4 * 4096
    assert make_body(10, "ascii") == make_body(10, "ascii").strip()


@pytest.mark.parametrize("rooms", [0, 3])
async def test_post_run_posts_bodies_to_rooms(server: TestServer, rooms: int) -> None:
    result = await run(Scenario("post", 0, 0, post_seconds=0.3, conns=2, body_chars=100,
                                body="astral", rooms=rooms), f"{server.host}:{server.port}", None)
    assert result["posts_accepted"] > 0 and result["posts_rejected"] == 0
    assert result["body_utf8_bytes"] == 400 and result["message_json_bytes"] > 800


async def test_hold_run_counts_what_the_server_holds(aiohttp_server: Any, settings: Settings
                                                    ) -> None:
    # The memory store: the Redis store holds in RAM only the rooms this process watches.
    server = await aiohttp_server(create_app(settings))
    result = await run(Scenario("hold", 0, 30, body_chars=200, body="ascii", rooms=0),
                       f"{server.host}:{server.port}", None)
    assert result["posts_accepted"] == 30 and result["rooms_added"] == 30
    assert result["history_bytes_per_message"] >= result["message_json_bytes"] > 400


async def test_storm_run_resumes_every_client_exactly(server: TestServer) -> None:
    result = await run(Scenario("storm", subscribers=5, messages=8, rate=40.0, drain=5.0,
                                storm_after=0.1, storm_spread=0.05),
                       f"{server.host}:{server.port}", None)
    assert (result["storm_200"], result["storm_503"], result["storm_reopened"]) == (5, 0, 5)
    assert (result["storm_clients_with_gap"], result["storm_clients_with_dup"]) == (0, 0)
    assert (result["expected"], result["delivered"], result["duplicates"]) == (40, 40, 0)


@pytest.mark.redis
async def test_storm_to_a_fresh_process_on_the_same_redis(
        aiohttp_server: Any, settings: Settings, redis_url: str) -> None:
    first, second = [await aiohttp_server(create_app(dataclasses.replace(settings, store=redis_url)))
                     for _ in range(2)]
    result = await run(Scenario("storm", subscribers=5, messages=8, rate=40.0, drain=5.0,
                                storm_after=0.1, storm_spread=0.05, storm_to="fresh"),
                       f"{first.host}:{first.port}", None,
                       fresh=(f"{second.host}:{second.port}", None))
    assert (result["storm_200"], result["storm_503"], result["storm_reopened"]) == (5, 0, 5)
    assert (result["storm_clients_with_gap"], result["storm_clients_with_dup"]) == (0, 0)
    assert (result["expected"], result["delivered"], result["duplicates"]) == (40, 40, 0)


@pytest.fixture
def settings() -> Settings:
    return with_settings(secret=SECRET)  # the harness's XSRF token is signed with it


@pytest.fixture
async def server(aiohttp_server, app):  # type: ignore[no-untyped-def]
    return await aiohttp_server(app)


def test_the_command_line_parses() -> None:
    """Every option of `python -m bench` (a duplicate, say, would fail them all)."""
    import subprocess
    import sys
    for command in (["run", "--help"], ["matrix", "--help"], ["report", "--help"]):
        done = subprocess.run([sys.executable, "-m", "bench", *command], capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
