"""The load harness (bench/) counts right: no timing is asserted, only what arrived."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer

from bench.accounting import account, percentile
from bench.clients import SECRET
from bench.run import Scenario, run
from chat.settings import Settings

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


@pytest.fixture
def settings() -> Settings:
    return with_settings(secret=SECRET)  # the harness's XSRF token is signed with it


@pytest.fixture
async def server(aiohttp_server, app):  # type: ignore[no-untyped-def]
    return await aiohttp_server(app)
