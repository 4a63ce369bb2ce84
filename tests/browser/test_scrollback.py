"""Scrolling back: at the top of the list (or with "Load earlier messages", for keyboards) the page
fetches older messages from /a/message/history and puts them in above, keeping the reader's place,
never showing a message twice, until the room's beginning. On a SQLite store, where the room keeps
more than the page shows (its RAM window is --history, 200)."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest
from playwright.async_api import Route, expect

from ..support import until
from .server import Api, ChatServer
from .support import Arrive, Person

pytestmark = pytest.mark.sqlite
DESKTOP = {"viewport": {"width": 800, "height": 600}}


async def post_many(api: Api, room: str, count: int) -> list[str]:
    """``count`` messages, one after another, and their ids in the order the server took them."""
    return [(await api.post(f"message {n}", room=room))["id"] for n in range(count)]


async def top_of(person: Person, message_id: str) -> float:
    """Where a message is, relative to the top of the list's visible area (px)."""
    top: float = await person.page.locator("#inbox").evaluate(
        "(el, id) => document.getElementById('m' + id).getBoundingClientRect().top"
        " - el.getBoundingClientRect().top", message_id)
    return top


async def test_scrolling_to_the_top_shows_all_1000_once_in_order(arrive: Arrive, api: Api,
                                                                 server: ChatServer) -> None:
    posted = await post_many(api, "long", 1000)
    alice = await arrive("alice", url=server.url + "/rooms/long", **DESKTOP)
    await expect(alice.status).to_have_attribute("data-state", "live")
    await expect(alice.messages).to_have_count(200)  # the page renders the newest 200
    inbox = alice.page.locator("#inbox")
    beginning = alice.page.locator("#beginning")
    await inbox.hover()
    for _ in range(40):
        if await beginning.is_visible():
            break
        shown = await alice.messages.count()
        await alice.page.mouse.wheel(0, -100_000)  # the reader goes up to the top, and again
        await until(partial(_grew, alice, shown), True, timeout=5.0)
        # The reader stays where they were: the older messages went in above, out of sight.
        assert await inbox.evaluate("el => el.scrollTop") > 0 or await beginning.is_visible()
    await expect(beginning).to_have_text("This is the beginning of #long.")
    await expect(alice.page.locator("#load-earlier")).to_be_hidden()
    assert await alice.ids() == posted  # all 1,000, once each, in order
    days = await alice.page.locator("#inbox h2.day").count()
    assert days == 1, "the older pages were put under the day heading they share"


async def _grew(person: Person, shown: int) -> bool:
    return await person.messages.count() > shown or \
        await person.page.locator("#beginning").is_visible()


@pytest.mark.server_args("--history", "60")
async def test_the_button_loads_earlier_messages_by_keyboard_and_keeps_the_place(
        arrive: Arrive, api: Api, server: ChatServer) -> None:
    """Without IntersectionObserver only the button loads: it is all a keyboard needs."""
    posted = await post_many(api, "kb", 120)  # the page shows 60; two pages of 50, then 10
    alice = await arrive("alice", url="", **DESKTOP)
    await alice.context.add_init_script("delete window.IntersectionObserver;")
    await alice.page.goto(server.url + "/rooms/kb")
    await expect(alice.messages).to_have_count(60)
    button = alice.page.get_by_role("button", name="Load earlier messages")
    await alice.page.locator("#inbox").focus()
    await alice.page.keyboard.press("Tab")  # the first thing in the list
    await expect(button).to_be_focused()

    for shown in (110, 120):
        oldest = (await alice.ids())[0]
        before = await top_of(alice, oldest)
        await alice.page.keyboard.press("Enter")
        await expect(alice.messages).to_have_count(shown)
        assert abs(await top_of(alice, oldest) - before) < 1, "the list jumped under the reader"
        if shown < 120:
            await expect(button).to_be_focused()
    assert await alice.ids() == posted
    # Nothing older: the button goes, the keyboard stays in the list, and it is said.
    await expect(button).to_be_hidden()
    await expect(alice.page.locator("#inbox")).to_be_focused()
    await expect(alice.page.locator("#beginning")).to_be_visible()
    await expect(alice.page.locator("#announce")).to_have_text("This is the beginning of #kb.")


async def test_a_page_answered_with_reset_shows_nothing_and_waits_for_the_stream(
        arrive: Arrive, api: Api, server: ChatServer) -> None:
    """``reset``: the oldest id shown is of a history the server no longer has. The page adds
    nothing from that answer; the stream's own reset will say so and scrolling back goes on in
    the new history. Should the stream not, the page asks again after a while."""
    posted = await post_many(api, "moved", 260)
    alice = await arrive("alice", url=server.url + "/rooms/moved", **DESKTOP)
    await expect(alice.status).to_have_attribute("data-state", "live")
    answered = asyncio.Event()

    async def reset(route: Route) -> None:
        await route.fulfill(json={"messages": [], "more": True, "reset": True})
        answered.set()

    await alice.page.route("**/a/message/history*", reset)
    inbox = alice.page.locator("#inbox")
    await inbox.evaluate("el => el.scrollTop = 0")  # the reader reaches the top
    await asyncio.wait_for(answered.wait(), 5)
    await expect(alice.page.locator("#load-earlier")).to_be_hidden()
    assert await alice.messages.count() == 200
    await alice.page.unroute("**/a/message/history*")
    # No reset came (the stream's history is the server's): the reader, still at the top, gets
    # the next older page after the wait (their place kept: no longer at the top), then the rest.
    await expect(alice.messages).to_have_count(250, timeout=10_000)
    await inbox.evaluate("el => el.scrollTop = 0")
    await expect(alice.messages).to_have_count(260)
    await expect(alice.page.locator("#beginning")).to_be_visible()
    assert await alice.ids() == posted
