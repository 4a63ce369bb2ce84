"""The page for everyone: its semantics (a labelled, focusable log of articles, a labelled
nickname) and an axe-core audit of every state in light and dark, on a phone and a desktop.

axe-core comes from the ``axe-playwright-python`` package (the ``test`` extra), injected into the
page under test by Playwright; it is never served from ``static/``.
"""

from __future__ import annotations

import importlib.resources
from typing import Any

import pytest
from playwright.async_api import Page, expect

from .server import Api, ChatServer
from .support import Arrive

DEVICES: dict[str, dict[str, Any]] = {
    "phone": {"viewport": {"width": 360, "height": 640}, "has_touch": True, "is_mobile": True},
    "desktop": {"viewport": {"width": 1024, "height": 700}},
}
# The axe-core build the package bundles; evaluated by Playwright, so the page's CSP allows it.
AXE_JS = (importlib.resources.files("axe_playwright_python") / "axe.min.js").read_text()


async def violations(page: Page) -> str:
    """axe-core's default rules (WCAG 2.x A/AA and best practices) on the page as it is now; the
    report of what failed, or "" when nothing did."""
    await page.evaluate(AXE_JS)
    found: list[dict[str, Any]] = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']}\n" + "\n".join(
            f"    {', '.join(map(str, node['target']))}: {node['failureSummary']}" for node in v["nodes"])
        for v in found)


async def test_the_list_is_a_labelled_log_of_articles_a_keyboard_can_reach(arrive: Arrive,
                                                                           api: Api) -> None:
    for n in range(3):
        await api.post(f"message {n}", name="bob")
    alice = await arrive("alice")
    page = alice.page
    log = page.get_by_role("log", name="Messages in #main")
    await expect(log).to_have_attribute("id", "inbox")
    await expect(log.get_by_role("article")).to_have_count(3)
    await alice.say("mine")
    await expect(log.get_by_role("article")).to_have_count(4)
    # Shift+Tab from the nickname reaches the list, and the arrow keys then scroll it.
    await page.locator("#name").focus()
    await page.keyboard.press("Shift+Tab")
    await expect(log).to_be_focused()
    # The nickname's label is on screen, not only for screen readers.
    await expect(page.get_by_label("Your name")).to_have_attribute("id", "name")
    await expect(page.locator("label[for=name]")).to_be_visible()
    await expect(page.get_by_label("Message", exact=True)).to_have_attribute("id", "body")
    for selector in ("#inbox", "#status", "#body", "#name", "#send-error"):
        await expect(page.locator(selector)).to_have_count(1)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("device", ["phone", "desktop"])
async def test_axe_finds_nothing_in_any_state(arrive: Arrive, api: Api, server: ChatServer,
                                              scheme: str, device: str) -> None:
    options = {**DEVICES[device], "color_scheme": scheme}
    found: dict[str, str] = {}

    async def audit(state: str, page: Page) -> None:
        report = await violations(page)
        if report:
            found[state] = report

    empty = await arrive("nobody yet", url=server.url + "/rooms/empty", **options)
    await expect(empty.status).to_have_attribute("data-state", "live")
    await audit("empty room", empty.page)

    for n in range(30):
        await api.post(f"message {n}: see https://example.com/{n}", name="bob" if n % 2 else "سارة")
    alice = await arrive("alice", name="alice", **options)
    bob = await arrive("bob", polling=True, **options)
    await expect(alice.status).to_have_attribute("data-state", "live")
    await expect(bob.status).to_have_attribute("data-state", "polling")
    await alice.page.locator("#body").fill("hello from alice")
    await alice.page.locator("button.send").click()  # on a phone Enter adds a line
    await alice.sees("hello from alice")
    await audit("live", alice.page)
    await audit("polling", bob.page)

    # Who is here and who is typing, and the rooms with a refused name: panels open (a phone
    # folds them; its reader opens them).
    await api.typing("carol")
    await expect(alice.page.locator("#typing")).to_have_text("carol is typing…")
    await expect(alice.page.locator("#members .more")).to_have_text("and 1 more")
    for panel in ("#people", "#rooms"):
        if not await alice.page.locator(panel).evaluate("el => el.open"):
            await alice.page.locator(f"{panel} summary").click()
    await alice.page.locator("#room-name").fill("no good")
    await alice.page.locator("#room-name").press("Enter")
    await expect(alice.page.locator("#room-error")).to_be_visible()
    await audit("people, typing, rooms and a refused room name", alice.page)

    await alice.page.locator("#inbox").evaluate("el => el.scrollTop = 0")
    await api.post("while scrolled up")
    await expect(alice.page.locator("#new-messages")).to_be_visible()
    await audit("new-messages button", alice.page)

    await server.stop()
    await expect(alice.status).to_have_attribute("data-state", "reconnecting")
    await audit("reconnecting", alice.page)
    await alice.page.locator("#body").fill("this will fail")
    await alice.page.locator("button.send").click()
    await expect(alice.page.locator("#send-error")).to_be_visible()
    await expect(alice.pending.get_by_role("button", name="Retry")).to_be_visible()
    await audit("send failed", alice.page)

    await alice.context.set_offline(True)
    await expect(alice.status).to_have_attribute("data-state", "offline")
    await audit("offline", alice.page)

    await alice.context.set_offline(False)
    await server.start()
    await expect(alice.status).to_have_attribute("data-state", "live")
    await expect(alice.page.locator("#inbox .divider")).to_be_visible()
    await audit("after a reset", alice.page)

    assert not found, "\n\n".join(f"--- {state} ---\n{report}" for state, report in found.items())


@pytest.mark.sqlite
@pytest.mark.server_args("--history", "20")
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("device", ["phone", "desktop"])
async def test_axe_finds_nothing_while_scrolling_back(arrive: Arrive, api: Api, server: ChatServer,
                                                     scheme: str, device: str) -> None:
    """A room page (an "All rooms" link, no list) with more than it shows: the Load earlier
    button, loading, then the room's beginning."""
    found: dict[str, str] = {}
    for n in range(30):
        await api.post(f"message {n}", room="long", name="bob")
    alice = await arrive("alice", url=server.url + "/rooms/long", name="alice",
                         **DEVICES[device], color_scheme=scheme)
    await expect(alice.status).to_have_attribute("data-state", "live")
    await expect(alice.page.locator("#load-earlier")).to_be_attached()
    report = await violations(alice.page)
    if report:
        found["Load earlier"] = report
    await alice.page.locator("#inbox").evaluate("el => el.scrollTop = 0")
    await expect(alice.page.locator("#beginning")).to_be_visible()
    await expect(alice.messages).to_have_count(30)
    report = await violations(alice.page)
    if report:
        found["the beginning"] = report
    assert not found, "\n\n".join(f"--- {state} ---\n{report}" for state, report in found.items())
