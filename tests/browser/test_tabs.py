"""One stream per browser: tabs of one room share the stream of the tab holding the Web Lock, which
relays every event over a BroadcastChannel. The server sees one stream (``chat_stream_clients``)
and one member; every tab shows every message once; when the streaming tab closes another takes
over within a second or two and the others miss nothing. Without Web Locks, BroadcastChannel or
a secure context, each tab streams alone."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, expect

from ..support import until
from .server import Api, ChatServer
from .support import Arrive, Person


async def stream_clients(server: ChatServer) -> float:
    """The server's ``chat_stream_clients`` gauge (the test runs on loopback: /metrics answers)."""
    async with aiohttp.ClientSession() as session, session.get(server.url + "/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith("chat_stream_clients "):
                return float(line.split()[1])
    raise AssertionError("chat_stream_clients not in /metrics")


async def presence(server: ChatServer, room: str = "main") -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, \
            session.get(server.url + "/a/presence", params={"room": room}) as response:
        result: dict[str, Any] = await response.json()
        return result


async def open_tabs(person: Person, url: str, count: int) -> list[Page]:
    """``count`` more tabs of the person's browser at ``url``; their uncaught errors are the
    person's."""
    tabs = []
    for _ in range(count):
        tab = await person.context.new_page()
        tab.on("pageerror", lambda error: person.errors.append(str(error)))
        await tab.goto(url)
        tabs.append(tab)
    return tabs


async def roles(pages: list[Page]) -> list[str]:
    return [await p.locator("#chat").get_attribute("data-role") or "" for p in pages]


async def ids(page: Page) -> list[str]:
    found: list[str] = await page.locator("#inbox .message[id]").evaluate_all(
        "els => els.map(e => e.id.slice(1))")
    return found


async def test_four_tabs_share_one_stream_and_hand_it_over(arrive: Arrive, api: Api,
                                                           server: ChatServer) -> None:
    alice = await arrive("alice", name="alice")
    tabs = [alice.page, *await open_tabs(alice, server.url + "/", 3)]
    for tab in tabs:
        await expect(tab.locator("#status")).to_have_attribute("data-state", "live")
    assert sorted(await roles(tabs)) == ["follower", "follower", "follower", "leader"]
    await until(lambda: stream_clients(server), 1.0)
    # One browser, one name: counted once, and every tab shows who is here.
    assert await presence(server) == {"count": 1, "members": ["alice"]}
    for tab in tabs:
        await expect(tab.locator("#people-count")).to_have_text("1 person here")

    # Every tab shows every message once: from elsewhere, and from a tab that does not stream.
    for n in range(3):
        await api.post(f"before {n}", name="bob")
    follower = tabs[(await roles(tabs)).index("follower")]
    await follower.locator("#body").fill("from a tab that does not stream")
    await follower.locator("#body").press("Enter")
    expected = await api.history_ids()
    assert len(expected) == 4
    for tab in tabs:
        await until(partial(ids, tab), expected)

    # The streaming tab closes while messages keep coming: another takes over within 2 s and
    # resumes from the last id relayed; the other tabs miss nothing and repeat nothing.
    leader = tabs[(await roles(tabs)).index("leader")]
    rest = [tab for tab in tabs if tab is not leader]

    async def keep_posting() -> None:
        for n in range(10):
            await api.post(f"during {n}", name="bob")
            await asyncio.sleep(0.05)

    posting = asyncio.ensure_future(keep_posting())
    await leader.close()
    loop = asyncio.get_running_loop()
    closed = loop.time()
    while "leader" not in await roles(rest):
        assert loop.time() - closed < 2.0, f"no tab took over: {await roles(rest)}"
        await asyncio.sleep(0.05)
    await posting
    expected = await api.history_ids()
    assert len(expected) == 14
    for tab in rest:
        await until(partial(ids, tab), expected)
        await expect(tab.locator("#status")).to_have_attribute("data-state", "live")
    await until(lambda: stream_clients(server), 1.0)
    assert await presence(server) == {"count": 1, "members": ["alice"]}


async def test_a_tab_opened_while_messages_flow_misses_none(arrive: Arrive, api: Api,
                                                            server: ChatServer) -> None:
    """A new tab's page was rendered before the streaming tab relayed the latest messages: it
    says hello with its cursor and is sent what it missed."""
    alice = await arrive("alice")
    await expect(alice.status).to_have_attribute("data-state", "live")
    flowing = True

    async def keep_posting() -> None:
        n = 0
        while flowing:
            await api.post(f"flowing {n}")
            n += 1
            await asyncio.sleep(0.02)

    posting = asyncio.ensure_future(keep_posting())
    tabs = [alice.page, *await open_tabs(alice, server.url + "/", 3)]
    await asyncio.sleep(0.5)
    flowing = False
    await posting
    expected = await api.history_ids()
    for tab in tabs:
        await until(partial(ids, tab), expected)
    assert sorted(await roles(tabs)) == ["follower", "follower", "follower", "leader"]
    assert await stream_clients(server) == 1.0


# Each takes away one thing sharing needs; the page then streams in every tab, as before.
WITHOUT = {
    "web-locks": "Object.defineProperty(Navigator.prototype, 'locks', {get: () => undefined});",
    "broadcast-channel": "delete window.BroadcastChannel;",
    "secure-context": "Object.defineProperty(window, 'isSecureContext', {get: () => false});",
}


@pytest.mark.parametrize("missing", list(WITHOUT))
async def test_without_what_sharing_needs_each_tab_streams_alone(arrive: Arrive, api: Api,
                                                                 server: ChatServer,
                                                                 missing: str) -> None:
    alice = await arrive("alice", url="")
    await alice.context.add_init_script(WITHOUT[missing])
    await alice.page.goto(server.url + "/")
    tabs = [alice.page, *await open_tabs(alice, server.url + "/", 1)]
    for tab in tabs:
        await expect(tab.locator("#status")).to_have_attribute("data-state", "live")
    assert await roles(tabs) == ["solo", "solo"]
    await until(lambda: stream_clients(server), 2.0)
    posted = await api.post("to both")
    for tab in tabs:
        await until(partial(ids, tab), [posted["id"]])
