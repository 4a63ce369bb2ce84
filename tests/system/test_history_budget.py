"""--history-bytes holds a real server at its budget: a client posting maximum-size astral
bodies to thousands of fresh rooms levels RSS off, the most active room keeps its history, and
a cursor into a forgotten room resets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from ..support import NO_LIMITS, XSRF, ServerProcess

BUDGET = 4 * 1024 * 1024
BODY = "😀" * 4096  # 16 KiB of UTF-8: the JSON holds it twice (body and html)
ROOMS = 3000


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def metric(session: aiohttp.ClientSession, url: str, name: str) -> float:
    text = await (await session.get(url + "/metrics")).text()
    return float(next(line.split()[1] for line in text.splitlines()
                      if line.startswith(name + " ")))


async def test_rss_levels_off_at_the_budget_and_the_active_room_survives() -> None:
    with ServerProcess("--history-bytes", str(BUDGET), "--history", "100",
                       *NO_LIMITS) as server:
        assert server.proc is not None
        pid, url = server.proc.pid, server.url
        async with aiohttp.ClientSession(cookies={"_xsrf": XSRF}) as session:

            async def post(room: str, body: str = BODY) -> dict[str, str]:
                async with session.post(url + "/a/message/new",
                                        data={"_xsrf": XSRF, "room": room, "body": body}) as r:
                    assert r.status == 200, await r.text()
                    reply: dict[str, str] = await r.json()
                    return reply

            active = [await post("active", f"keep {i}") for i in range(20)]
            first_fresh = await post("fresh0")
            rss: dict[int, int] = {}
            for start in range(1, ROOMS, 50):
                await asyncio.gather(*(post(f"fresh{n}") for n in range(start, start + 50)))
                await post("active", "still here")  # the most recently active room, always
                if start - 1 in (1000, 2000) or start + 50 >= ROOMS:
                    rss[start] = rss_kb(pid)
            held = await metric(session, url, "chat_history_bytes")
            rooms = await metric(session, url, "chat_rooms")
            assert held <= BUDGET
            # Unbounded, 2,000 more such messages would hold 60+ MB more. Held to the budget,
            # RSS stays flat from the 1,000th room on (allocator slack aside).
            marks = sorted(rss)
            assert rss[marks[-1]] - rss[marks[0]] < 16 * 1024, rss
            assert rooms < 200, rooms  # forgotten rooms are gone, not kept empty

            # The active room kept its history: a cursor into it resumes without a reset.
            async with session.post(url + "/a/message/updates",
                                    data={"_xsrf": XSRF, "room": "active",
                                          "cursor": active[-1]["id"]}) as r:
                reply = await r.json()
            assert "reset" not in reply and reply["messages"][0]["body"] == "still here"

            # A cursor into a forgotten room resets, on both transports: its history is gone, and
            # the room's next message begins another one.
            back = await post("fresh0", "back")
            async with session.post(url + "/a/message/updates",
                                    data={"_xsrf": XSRF, "room": "fresh0",
                                          "cursor": first_fresh["id"]}) as r:
                assert await r.json() == {"messages": [back], "reset": True}
            async with session.get(url + "/a/message/stream",
                                   params={"room": "fresh0"},
                                   headers={"Last-Event-ID": first_fresh["id"]}) as r:
                frames = b""
                while b"event: message" not in frames or not frames.endswith(b"\n\n"):
                    frames += await asyncio.wait_for(r.content.readany(), 5)
            reset = frames.split(b"event: reset\ndata: ", 1)[1].split(b"\n", 1)[0]
            assert json.loads(reset) == {"reason": "epoch"}
            assert b'"body":"back"' in frames.split(b"event: reset", 1)[1]
