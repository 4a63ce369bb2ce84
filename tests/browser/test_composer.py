"""Writing and sending: Enter on a touch screen, a box that grows, a phone-sized layout, and a
message that shows at once as "Sending…" and is then confirmed in place."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from playwright.async_api import Route, expect

from ..support import until
from .server import Api, ChatServer
from .support import Arrive, Person

PHONE: dict[str, Any] = {"viewport": {"width": 360, "height": 640}, "has_touch": True, "is_mobile": True,
                         "device_scale_factor": 2}


def sent_bodies(person: Person) -> list[str]:
    return [body for url, body in person.posts if url.endswith("/a/message/new")]


async def test_on_a_touch_screen_enter_adds_a_line_and_send_sends(arrive: Arrive, api: Api) -> None:
    alice = await arrive("alice", **PHONE)
    await expect(alice.status).to_have_attribute("data-state", "live")
    body = alice.page.locator("#body")
    await expect(body).to_have_attribute("enterkeyhint", "send")
    await expect(alice.page.locator("#hint")).to_have_text("Enter adds a line. Send sends.")
    await body.tap()
    await body.press_sequentially("first line")
    await body.press("Enter")
    await body.press_sequentially("second line")
    await expect(body).to_have_value("first line\nsecond line")
    assert not sent_bodies(alice), "Enter sent the message"

    await alice.page.locator("button.send").tap()
    await expect(alice.messages).to_have_count(1)
    await expect(body).to_have_value("")
    assert [m["body"] for m in await api.history()] == ["first line\nsecond line"]


async def test_with_a_keyboard_the_hint_says_enter_sends(arrive: Arrive) -> None:
    alice = await arrive("alice")
    await expect(alice.page.locator("#hint")).to_have_text("Enter sends. Shift+Enter adds a line.")
    await expect(alice.page.locator("#body")).to_have_attribute("aria-describedby", "hint")


async def test_the_box_grows_to_about_six_lines_then_scrolls(arrive: Arrive) -> None:
    alice = await arrive("alice")
    body = alice.page.locator("#body")
    metrics = """el => {
      const s = getComputedStyle(el);
      return {line: parseFloat(s.lineHeight), client: el.clientHeight, scroll: el.scrollHeight,
              top: el.scrollTop, padding: parseFloat(s.paddingTop) + parseFloat(s.paddingBottom)};
    }"""
    one = await body.evaluate(metrics)
    await body.press_sequentially("one")
    for word in ("two", "three"):
        await body.press("Shift+Enter")
        await body.press_sequentially(word)
    three = await body.evaluate(metrics)
    # All three lines in view: the first has not scrolled away.
    assert three["top"] == 0 and three["scroll"] <= three["client"], three
    assert three["client"] - three["padding"] >= 3 * three["line"] - 1, three

    for n in range(10):
        await body.press("Shift+Enter")
        await body.press_sequentially(f"more {n}")
    many = await body.evaluate(metrics)
    lines = (many["client"] - many["padding"]) / many["line"]
    assert 5.5 <= lines <= 6.5, many
    assert many["scroll"] > many["client"]  # the rest scrolls inside the box

    await body.press("Enter")  # sent: back to one line
    await expect(body).to_have_value("")
    assert (await body.evaluate(metrics))["client"] == one["client"]


async def test_a_360_px_phone_fits_the_composer_and_its_hint(arrive: Arrive, api: Api,
                                                             server: ChatServer) -> None:
    for n in range(3):
        await api.post(f"a longer message number {n} to fill the line " + "word " * 12, name="bob")
    alice = await arrive("alice", **PHONE)
    page = alice.page
    await expect(alice.status).to_have_attribute("data-state", "live")
    layout = await page.evaluate("""() => {
      const box = sel => document.querySelector(sel).getBoundingClientRect().toJSON();
      const body = document.getElementById("body"), s = getComputedStyle(body);
      const ctx = document.createElement("canvas").getContext("2d");
      ctx.font = s.font;
      const hint = document.getElementById("hint");
      const dvh = Array.from(document.styleSheets).some(sheet => Array.from(sheet.cssRules).some(
          r => r.selectorText === "#chat" && r.cssText.includes("100dvh")));
      return {
        pageWidth: document.documentElement.scrollWidth, innerWidth, innerHeight, dvh,
        name: box("#name"), body: box("#body"), send: box("button.send"), hint: box("#hint"),
        composer: box("#composer"), nameLabel: box("label[for=name]"),
        placeholder: ctx.measureText(body.placeholder).width,
        bodyContent: body.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight),
        hintClipped: hint.scrollWidth > hint.clientWidth,
      };
    }""")
    assert layout["innerWidth"] == 360
    assert layout["pageWidth"] <= 360, "the page scrolls sideways"
    name, body, send, hint = layout["name"], layout["body"], layout["send"], layout["hint"]
    # The nickname has its own row; the box and Send share the next one, inside the screen.
    assert name["bottom"] <= body["top"] and layout["nameLabel"]["bottom"] <= body["top"]
    assert send["top"] < body["bottom"] and body["top"] < send["bottom"], "Send wrapped to its own row"
    assert send["right"] <= 360 and body["left"] >= 0
    assert layout["placeholder"] <= layout["bodyContent"], f"placeholder cut: {layout}"
    assert not layout["hintClipped"] and hint["right"] <= 360 and hint["bottom"] <= layout["innerHeight"]
    # The page is one dynamic-viewport-high screen: the composer is on it, not below the fold.
    assert layout["dvh"] and layout["composer"]["bottom"] <= layout["innerHeight"] + 0.5
    for target in (name, body, send):
        assert target["height"] >= 44 and target["width"] >= 44, layout

    # A message that failed keeps a Retry button that is a full-size touch target too.
    await server.stop()
    await page.locator("#body").tap()
    await page.locator("#body").press_sequentially("from the bus")
    await page.locator("button.send").tap()
    retry = alice.pending.get_by_role("button", name="Retry")
    await expect(retry).to_be_visible()
    size = await retry.bounding_box()
    assert size is not None and size["height"] >= 44 and size["width"] >= 44, size
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360


async def test_a_message_shows_at_once_then_is_confirmed_in_place(arrive: Arrive, api: Api) -> None:
    alice = await arrive("alice")
    await expect(alice.status).to_have_attribute("data-state", "live")
    await api.post("before")
    await alice.sees("before")
    held: list[Route] = []
    arrived = asyncio.Event()

    async def hold(route: Route) -> None:
        held.append(route)
        arrived.set()

    await alice.page.route("**/a/message/new", hold)
    await alice.page.locator("#name").fill("alice")
    await alice.say("hello, world")
    await asyncio.wait_for(arrived.wait(), 10)
    pending = alice.pending.filter(has_text="hello, world")
    await expect(pending.locator(".send-state")).to_have_text("Sending…")
    await expect(pending.locator(".name")).to_have_text("alice")
    await expect(alice.page.locator("#body")).to_have_value("")  # the box is free at once
    position = "el => Array.prototype.indexOf.call(el.parentNode.children, el)"
    where = await pending.evaluate(position)

    async with alice.page.expect_response("**/a/message/new") as reply:
        await held[0].continue_()
    stored = await (await reply.value).json()
    confirmed = alice.page.locator(f"[id='m{stored['id']}']")  # matched by the reply's id
    await expect(confirmed.locator(".body")).to_have_text("hello, world")
    assert await confirmed.evaluate(position) == where, "not confirmed in place"
    await expect(alice.pending).to_have_count(0)
    await until(alice.ids, await api.history_ids())
    await expect(alice.messages.filter(has_text="hello, world")).to_have_count(1)


async def test_delivered_before_the_reply_is_shown_once(arrive: Arrive, api: Api) -> None:
    """The stream can bring one's own message before the POST's reply does; the reply then
    removes the "Sending…" copy instead of adding a second one."""
    alice = await arrive("alice")
    await expect(alice.status).to_have_attribute("data-state", "live")
    delivered = asyncio.Event()

    async def reply_late(route: Route) -> None:
        response = await route.fetch()  # the server stores it and streams it to the page
        message = json.loads(await response.text())
        await alice.sees(message["body"])
        assert await alice.pending.count() == 1  # still waiting for this very reply
        delivered.set()
        await route.fulfill(response=response)

    await alice.page.route("**/a/message/new", reply_late)
    await alice.say("raced")
    await asyncio.wait_for(delivered.wait(), 10)
    await expect(alice.pending).to_have_count(0)
    await expect(alice.page.locator("#inbox .message").filter(has_text="raced")).to_have_count(1)
    assert await alice.ids() == await api.history_ids()


async def test_confirmed_before_delivery_takes_its_place_in_the_servers_order(
        arrive: Arrive, api: Api) -> None:
    """Bob's poll is held while someone else posts and then bob sends: his message is confirmed
    (it has its id) before the other one reaches him. Delivered, both end up in the server's
    order, each once."""
    bob = await arrive("bob", url="", polling=True)
    held: list[Route] = []
    released = asyncio.Event()

    async def hold(route: Route) -> None:
        if released.is_set():
            await route.continue_()
        else:
            held.append(route)

    await bob.page.route("**/a/message/updates", hold)
    await bob.page.goto(api.server.url + "/")
    await expect(bob.status).to_have_attribute("data-state", "polling")

    async def polls_held() -> int:
        return len(held)

    await until(polls_held, 1)
    first = await api.post("first, from someone else")
    await bob.say("second, from bob")
    await expect(bob.messages.filter(has_text="second, from bob")).to_be_visible()
    history = await api.history_ids()
    assert history[0] == first["id"]
    assert await bob.timeline() == history[1:]  # confirmed, not yet delivered

    released.set()
    for route in held:
        await route.continue_()
    await until(bob.timeline, history)
    await expect(bob.page.locator("#inbox .message")).to_have_count(2)
