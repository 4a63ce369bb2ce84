"""WCAG 2.2 AA contrast, measured: the colours Chromium computes for each part of the page, in
light and dark, against the background they are drawn on. Text needs 4.5:1 (all of ours is
small); borders of controls, focus rings, badges and buttons need 3:1 (1.4.11, non-text).

Run with ``-s`` to see every measured ratio.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import Page, Route, expect

from .server import Api, ChatServer
from .support import Arrive

TEXT, NON_TEXT = 4.5, 3.0

# (what, selector, colour measured, against: "behind" = the element's own background or the
# first opaque one behind it; "around" = the first opaque background behind its parent).
Check = tuple[str, str, str, str, float]

MESSAGE = ".message[id]:not(.stale)"
PAGE_CHECKS: list[Check] = [
    ("room name", "h1", "color", "behind", TEXT),
    ("day heading", "h2.day", "color", "behind", TEXT),
    ("name in a message", f"{MESSAGE} .name", "color", "behind", TEXT),
    ("message text", f"{MESSAGE} .body", "color", "behind", TEXT),
    ("timestamp", f"{MESSAGE} time", "color", "behind", TEXT),
    ("link", f"{MESSAGE} a", "color", "behind", TEXT),
    ("nickname label", "label[for=name]", "color", "behind", TEXT),
    ("nickname text", "#name", "color", "behind", TEXT),
    ("nickname placeholder", "#name", "placeholder", "behind", TEXT),
    ("message box text", "#body", "color", "behind", TEXT),
    ("message box placeholder", "#body", "placeholder", "behind", TEXT),
    ("hint under the box", "#hint", "color", "behind", TEXT),
    ("Send label", "button.send", "color", "behind", TEXT),
    ("new-messages label", "#new-messages", "color", "behind", TEXT),
    ("nickname border (page)", "#name", "borderTopColor", "around", NON_TEXT),
    ("nickname border (field)", "#name", "borderTopColor", "behind", NON_TEXT),
    ("message box border (page)", "#body", "borderTopColor", "around", NON_TEXT),
    ("message box border (field)", "#body", "borderTopColor", "behind", NON_TEXT),
    ("Send button", "button.send", "backgroundColor", "around", NON_TEXT),
    ("new-messages button", "#new-messages", "backgroundColor", "around", NON_TEXT),
]
STATUS_CHECKS: list[Check] = [
    ("status text", "#status", "color", "behind", TEXT),
    ("status badge border", "#status", "borderTopColor", "around", NON_TEXT),
]
FOCUS_CHECKS: list[Check] = [("focus ring", ":focus-visible", "outlineColor", "around", NON_TEXT)]
INSET_FOCUS_CHECKS: list[Check] = [
    ("focus ring (inset)", ":focus-visible", "outlineColor", "behind", NON_TEXT)]
SENDING_CHECKS: list[Check] = [("Sending…", ".pending .send-state", "color", "behind", TEXT)]
FAILED_CHECKS: list[Check] = [
    ("Not sent", ".pending.failed .send-state", "color", "behind", TEXT),
    ("Retry label", ".retry", "color", "behind", TEXT),
    ("Retry border", ".retry", "borderTopColor", "around", NON_TEXT),
    ("send error", "#send-error", "color", "behind", TEXT),
]
RESET_CHECKS: list[Check] = [
    ("reset divider text", ".divider", "color", "behind", TEXT),
    ("reset divider border", ".divider", "borderTopColor", "around", NON_TEXT),
    ("kept message text", ".message.stale .body", "color", "behind", TEXT),
    ("kept message name", ".message.stale .name", "color", "behind", TEXT),
    ("kept message time", ".message.stale time", "color", "behind", TEXT),
    ("kept message link", ".message.stale a", "color", "behind", TEXT),
]
EMPTY_CHECKS: list[Check] = [("empty room invitation", "#empty", "color", "behind", TEXT)]
PEOPLE_CHECKS: list[Check] = [
    ("people here (summary)", "#people-count", "color", "behind", TEXT),
    ("member name", "#members .member", "color", "behind", TEXT),
    ("(you)", "#members .you", "color", "behind", TEXT),
    ("and N more", "#members .more", "color", "behind", TEXT),
    ("typing line", "#typing", "color", "behind", TEXT),
    ("beginning of the room", "#beginning", "color", "behind", TEXT),
]
ROOMS_CHECKS: list[Check] = [
    ("rooms (summary)", "#rooms summary", "color", "behind", TEXT),
    ("room link", "#room-list a", "color", "behind", TEXT),
    ("room people and last message", "#room-list .meta", "color", "behind", TEXT),
    ("room field label", "label[for=room-name]", "color", "behind", TEXT),
    ("room field text", "#room-name", "color", "behind", TEXT),
    ("room field border (page)", "#room-name", "borderTopColor", "around", NON_TEXT),
    ("room field border (field)", "#room-name", "borderTopColor", "behind", NON_TEXT),
    ("room name rule", "#room-rule", "color", "behind", TEXT),
    ("Open label", "button.open", "color", "behind", TEXT),
    ("Open button", "button.open", "backgroundColor", "around", NON_TEXT),
]
ROOM_ERROR_CHECKS: list[Check] = [
    ("room name error", "#room-error", "color", "behind", TEXT),
    ("room field border (refused, page)", "#room-name", "borderTopColor", "around", NON_TEXT),
]
EARLIER_CHECKS: list[Check] = [
    ("Load earlier label", "#load-earlier", "color", "behind", TEXT),
    ("Load earlier border", "#load-earlier", "borderTopColor", "around", NON_TEXT),
    ("All rooms link", ".all-rooms", "color", "behind", TEXT),
]

_MEASURE = """checks => {
  const parse = value => {
    const m = value.match(/^rgba?\\(([^)]*)\\)$/);
    if (!m) throw new Error("not an sRGB colour: " + value);
    const [r, g, b, a = 1] = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return {r, g, b, a};
  };
  const channel = v => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const luminance = c => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  const behind = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c.a === 1) return c;
      if (c.a !== 0) throw new Error("a translucent background makes the ratio a guess: " + e.id);
    }
    throw new Error("no opaque background behind " + el.outerHTML.slice(0, 80));
  };
  const hex = c => "#" + [c.r, c.g, c.b].map(v => v.toString(16).padStart(2, "0")).join("");
  return checks.map(([what, selector, property, against, min]) => {
    const el = document.querySelector(selector);
    if (!el) return {what, missing: selector};
    const style = property === "placeholder" ? getComputedStyle(el, "::placeholder") : getComputedStyle(el);
    const fg = parse(property === "placeholder" ? style.color : style[property]);
    if (fg.a !== 1) throw new Error(what + ": a translucent colour makes the ratio a guess");
    const bg = against === "behind" ? behind(el) : behind(el.parentElement);
    const [hi, lo] = [luminance(fg), luminance(bg)].sort((x, y) => y - x);
    return {what, fg: hex(fg), bg: hex(bg), ratio: Math.round((hi + 0.05) / (lo + 0.05) * 100) / 100, min};
  });
}"""


class Measurements:
    def __init__(self, scheme: str) -> None:
        self.scheme = scheme
        self.rows: list[dict[str, Any]] = []

    async def measure(self, page: Page, checks: list[Check], state: str = "") -> None:
        for row in await page.evaluate(_MEASURE, checks):
            assert "missing" not in row, f"{row['what']}: nothing matches {row['missing']}"
            row["what"] += f" ({state})" if state else ""
            self.rows.append(row)

    def table(self) -> str:
        return "\n".join(f"{self.scheme:5} {r['ratio']:6.2f}:1 (min {r['min']}) {r['fg']} on {r['bg']}"
                         f"  {r['what']}" for r in self.rows)

    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["ratio"] < r["min"]]


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_every_colour_pair_meets_wcag_aa(arrive: Arrive, api: Api, server: ChatServer,
                                               scheme: str) -> None:
    options = {"viewport": {"width": 800, "height": 600}, "color_scheme": scheme}
    measured = Measurements(scheme)

    empty = await arrive("nobody yet", url=server.url + "/rooms/empty", **options)
    await expect(empty.page.locator("#empty")).to_be_visible()
    await measured.measure(empty.page, EMPTY_CHECKS)

    for n in range(30):
        await api.post(f"message {n}, see https://example.com/{n}", name="bob")
    alice = await arrive("alice", name="alice", **options)
    bob = await arrive("bob", polling=True, **options)
    page = alice.page
    await expect(alice.status).to_have_attribute("data-state", "live")
    await expect(bob.status).to_have_attribute("data-state", "polling")
    # Who is here (alice, and bob without a name) and who is typing; the rooms on /.
    await expect(page.locator("#members .more")).to_have_text("and 1 more")
    await api.typing("carol")
    await expect(page.locator("#typing")).to_have_text("carol is typing…")
    await measured.measure(page, PEOPLE_CHECKS)
    await measured.measure(page, ROOMS_CHECKS)
    await page.locator("#room-name").fill("no such name")
    await page.locator("#room-name").press("Enter")
    await expect(page.locator("#room-error")).to_be_visible()
    await measured.measure(page, ROOM_ERROR_CHECKS)
    await page.locator("#rooms summary").focus()
    await measured.measure(page, FOCUS_CHECKS, "rooms summary")
    await measured.measure(page, STATUS_CHECKS, "Connected")
    await measured.measure(bob.page, STATUS_CHECKS, "compatibility mode")
    await page.locator("#inbox").evaluate("el => el.scrollTop = 0")
    await api.post("one more")
    await expect(page.locator("#new-messages")).to_be_visible()
    await page.locator("#name").fill("alice")
    await measured.measure(page, PAGE_CHECKS)

    # Focus rings, reached the way keyboard users reach them.
    await page.locator("#body").focus()
    await measured.measure(page, FOCUS_CHECKS, "message box")
    await page.keyboard.press("Tab")
    await expect(page.locator("button.send")).to_be_focused()
    await measured.measure(page, FOCUS_CHECKS, "Send")
    await page.locator("#inbox").focus()  # right after a keyboard move: shown as keyboard focus
    assert await page.locator("#inbox").evaluate("el => el.matches(':focus-visible')")
    await measured.measure(page, INSET_FOCUS_CHECKS, "list")

    held: list[Route] = []
    arrived = asyncio.Event()

    async def hold(route: Route) -> None:
        held.append(route)
        arrived.set()

    await page.route("**/a/message/new", hold)
    await alice.say("held for a moment")
    await asyncio.wait_for(arrived.wait(), 10)
    await measured.measure(page, SENDING_CHECKS)
    await held[0].continue_()
    await page.unroute("**/a/message/new")
    await expect(alice.pending).to_have_count(0)

    await server.stop()
    await expect(alice.status).to_have_attribute("data-state", "reconnecting")
    await measured.measure(page, STATUS_CHECKS, "Reconnecting")
    await alice.say("this one fails")
    await expect(page.locator("#send-error")).to_be_visible()
    await measured.measure(page, FAILED_CHECKS)
    await alice.context.set_offline(True)
    await expect(alice.status).to_have_attribute("data-state", "offline")
    await measured.measure(page, STATUS_CHECKS, "Offline")

    await alice.context.set_offline(False)
    await server.start()
    await expect(page.locator("#inbox .divider")).to_be_visible()
    await measured.measure(page, RESET_CHECKS)

    print("\n" + measured.table())
    assert not measured.failures(), "below WCAG AA:\n" + measured.table()


@pytest.mark.sqlite
@pytest.mark.server_args("--history", "20")
@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_scroll_back_and_the_room_pages_meet_wcag_aa(arrive: Arrive, api: Api,
                                                            server: ChatServer, scheme: str) -> None:
    """The Load earlier button shows where a room keeps more than the page holds (SQLite)."""
    measured = Measurements(scheme)
    for n in range(30):
        await api.post(f"message {n}", room="long")
    alice = await arrive("alice", url="", viewport={"width": 800, "height": 600},
                         color_scheme=scheme)
    # Only the button loads (reaching it by keyboard scrolls to the top, where the observer would).
    await alice.context.add_init_script("delete window.IntersectionObserver;")
    page = alice.page
    await page.goto(server.url + "/rooms/long")
    await expect(page.locator("#load-earlier")).to_be_visible()
    await measured.measure(page, EARLIER_CHECKS)
    await page.locator("#inbox").focus()
    await page.keyboard.press("Tab")
    await expect(page.locator("#load-earlier")).to_be_focused()
    assert await page.locator("#load-earlier").evaluate("el => el.matches(':focus-visible')")
    await measured.measure(page, FOCUS_CHECKS, "Load earlier")
    print("\n" + measured.table())
    assert not measured.failures(), "below WCAG AA:\n" + measured.table()
