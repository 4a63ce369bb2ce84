"""What a message shows: links (http and https only, escaped, with their rel), text direction
isolated per name and body, local times under day headings, and an empty room's invitation."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Route, expect

from .server import Api, ChatServer
from .support import Arrive, Person

HOSTILE = ("see https://example.com/a?b=1&c=2, javascript:alert(1) JAVASCRIPT:alert(2) "
           "data:text/html,<script>alert(3)</script> http://example.org/x\"onmouseover=alert(4) "
           "and (https://en.wikipedia.org/wiki/Go_(game)).")
LINKED = ["https://example.com/a?b=1&c=2", "http://example.org/x", "https://en.wikipedia.org/wiki/Go_(game)"]
REL = {"noopener", "noreferrer", "nofollow", "ugc"}

_LINKS = """inbox => Array.from(inbox.querySelectorAll("a"), a => ({
  href: a.getAttribute("href"), text: a.textContent, rel: Array.from(a.relList), target: a.target}))"""


async def check_links(person: Person) -> None:
    inbox = person.page.locator("#inbox")
    links: list[dict[str, Any]] = await inbox.evaluate(_LINKS)
    assert [link["href"] for link in links] == LINKED
    for link in links:
        assert set(link["rel"]) == REL and link["text"] == link["href"] and link["target"] == "_blank"
    hostile = "a[href^='javascript' i], a[href^='data' i], [onmouseover], script"
    assert await inbox.locator(hostile).count() == 0
    assert await person.bodies() == [HOSTILE]  # nothing lost or added to the text


@pytest.mark.parametrize("how", ["rendered", "eventsource", "polling", "sent"])
async def test_links_are_http_only_escaped_and_marked_ugc(arrive: Arrive, api: Api, how: str) -> None:
    """CSP is bypassed here, so only escaping keeps the hostile parts inert."""
    if how == "rendered":
        await api.post(HOSTILE)
    alice = await arrive("alice", bypass_csp=True, polling=how == "polling")
    await expect(alice.status).to_have_attribute("data-state", "polling" if how == "polling" else "live")
    if how == "sent":
        await alice.say(HOSTILE)
    elif how != "rendered":
        await api.post(HOSTILE)
    await expect(alice.messages).to_have_count(1)
    await check_links(alice)


async def test_name_and_body_each_take_their_own_direction(arrive: Arrive, api: Api,
                                                           server: ChatServer) -> None:
    await api.post("مرحبا، كيف حالك؟", name="سارة")  # rendered with the page
    alice = await arrive("alice", url=server.url + "/")
    await expect(alice.status).to_have_attribute("data-state", "live")
    await api.post("hello there!", name="\u202eann")  # streamed: an override in the name
    await alice.sees("hello there!")

    async def never_answer(route: Route) -> None:  # this send stays "Sending…"
        pass

    await alice.page.route("**/a/message/new", never_answer)
    await alice.page.locator("#name").fill("דוד")
    await alice.say("שלום!")
    await expect(alice.pending).to_have_count(1)

    parts = await alice.page.locator("#inbox").evaluate("""inbox => Array.from(
      inbox.querySelectorAll(".message .name, .message .body"),
      el => [el.textContent, el.getAttribute("dir"), el.matches(":dir(rtl)"),
             getComputedStyle(el).unicodeBidi])""")
    assert parts == [
        ["سارة", "auto", True, "isolate"], ["مرحبا، كيف حالك؟", "auto", True, "isolate"],
        ["\u202eann", "auto", False, "isolate"], ["hello there!", "auto", False, "isolate"],
        ["דוד", "auto", True, "isolate"], ["שלום!", "auto", True, "isolate"],
    ]


def tokyo_clock(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, ZoneInfo("Asia/Tokyo")).strftime("%H:%M")


GERMAN_DAYS = ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"]
GERMAN_MONTHS = ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September",
                 "Oktober", "November", "Dezember"]


@pytest.mark.parametrize("days_later", [0, 1, 3])
async def test_times_are_local_under_day_headings(arrive: Arrive, api: Api, server: ChatServer,
                                                  days_later: int) -> None:
    """A reader in Tokyo with a German browser; their clock is ``days_later`` ahead of the day
    the messages were posted, so the heading reads Heute/Today, Yesterday, or a date."""
    posted = [await api.post(f"message {n}") for n in range(2)]
    alice = await arrive("alice", url="", locale="de-DE", timezone_id="Asia/Tokyo")
    now = dt.datetime.now(dt.UTC) + dt.timedelta(days=days_later)
    if days_later:
        await alice.page.clock.set_fixed_time(now)
    await alice.page.goto(server.url + "/")
    await expect(alice.status).to_have_attribute("data-state", "live")
    await alice.say("mine")
    await alice.sees("mine")
    await expect(alice.pending).to_have_count(0)
    stored = await api.history()

    days = {dt.datetime.fromtimestamp(m["ts"], ZoneInfo("Asia/Tokyo")).date() for m in stored}
    if len(days) > 1:
        pytest.skip("the messages were posted either side of midnight in Tokyo")
    [day] = days
    times = alice.messages.locator("time")
    await expect(times).to_have_text([tokyo_clock(m["ts"]) for m in stored])
    assert [m["id"] for m in stored[:2]] == [m["id"] for m in posted]
    if days_later == 0:
        label = "Today"
    elif days_later == 1:
        label = "Yesterday"
    else:
        label = f"{GERMAN_DAYS[day.weekday()]}, {day.day}. {GERMAN_MONTHS[day.month - 1]}"
        if now.astimezone(ZoneInfo("Asia/Tokyo")).year != day.year:
            label += f" {day.year}"
    # One heading above all three: the one over "mine" while it was sending (the reader's clock
    # said another day) went away once the server's copy took its place.
    await expect(alice.page.locator("#inbox h2.day")).to_have_text([label])
    # First in the list: the scroll-back box (here: "This is the beginning"), then the heading.
    assert await alice.page.locator("#inbox > #earlier + *").evaluate("el => el.matches('h2.day')")


async def test_without_javascript_the_time_says_utc(arrive: Arrive, api: Api, server: ChatServer) -> None:
    message = await api.post("plain")
    carol = await arrive("carol", java_script_enabled=False)
    clock = dt.datetime.fromtimestamp(message["ts"], dt.UTC).strftime("%H:%M")
    await expect(carol.messages.locator("time")).to_have_text(f"{clock} UTC")


async def test_an_empty_room_invites_the_first_message(arrive: Arrive, server: ChatServer) -> None:
    url = server.url + "/rooms/quiet"
    carol = await arrive("carol", url=url, java_script_enabled=False)
    await expect(carol.page.locator("#inbox #empty")).to_have_text(
        "No messages here yet. Write the first one below.")
    alice = await arrive("alice", url=url)
    invitation = alice.page.locator("#inbox #empty")
    await expect(invitation).to_be_visible()
    await alice.say("first!")
    await expect(invitation).to_have_count(0)
    await alice.sees("first!")
