"""Presence across processes on one Redis: both lists agree, and a killed process's members
leave within the grace plus three renewals (no zombies after a deploy)."""

from __future__ import annotations

import signal
from typing import Any

import aiohttp
import pytest

from ..support import NO_LIMITS, ServerProcess, until

pytestmark = pytest.mark.redis


async def test_presence_agrees_across_processes_and_a_killed_one_leaves(redis_url: str) -> None:
    args = ("--store", redis_url, *NO_LIMITS, "--presence-grace", "0.5",
            "--presence-renew", "0.5")
    with ServerProcess(*args) as a, ServerProcess(*args) as b:
        async with aiohttp.ClientSession() as session:

            async def roster(server: ServerProcess) -> dict[str, Any]:
                async with session.get(server.url + "/a/presence", params={"room": "r"}) as r:
                    result: dict[str, Any] = await r.json()
                    return result

            both = {"count": 2, "members": ["alice", "bob"]}
            alice = await session.get(a.url + "/a/message/stream",
                                      params={"room": "r", "name": "alice"})
            bob = await session.get(b.url + "/a/message/stream",
                                    params={"room": "r", "name": "bob"})
            # Both lists agree within a presence round (1 s) and a renewal (0.5 s): the timing
            # is the contract, with slack for a busy machine.
            await until(lambda: roster(a), both, timeout=2.5)
            await until(lambda: roster(b), both, timeout=2.5)
            b.stop(signal.SIGKILL)
            bob.close()
            # b's view expires 3 renewals (1.5 s) after its last one: bob leaves a's list.
            await until(lambda: roster(a), {"count": 1, "members": ["alice"]}, timeout=4)
            alice.close()
