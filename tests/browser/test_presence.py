"""Who is here and who is typing, on the page: the member list with its count, names listed and
the unnamed counted; a leaver goes after --presence-grace and not before; a reload is never a
leave; "alice is typing…" within a second, gone when her message arrives or at its `until`."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from playwright.async_api import expect

from ..support import until
from .support import Arrive, Person

GRACE = 3.0
pytestmark = pytest.mark.server_args("--presence-grace", str(GRACE))

# Records every name taken out of the member list, and every count the summary showed.
_WATCH_LEAVES = """() => {
  window.__leaves = [];
  window.__counts = [];
  const members = document.getElementById("members");
  new MutationObserver(records => records.forEach(r => r.removedNodes.forEach(n => {
    if (n.dataset && n.dataset.name) window.__leaves.push(n.dataset.name);
  }))).observe(members, {childList: true});
  const count = document.getElementById("people-count");
  new MutationObserver(() => window.__counts.push(count.textContent))
    .observe(count, {childList: true, characterData: true, subtree: true});
}"""


def typing_posts(person: Person) -> list[str]:
    return [url for url, _ in person.posts if url.endswith("/a/typing")]


async def test_two_people_see_each_other_and_a_leaver_goes_after_the_grace(arrive: Arrive) -> None:
    alice = await arrive("alice", name="alice")
    await expect(alice.page.locator("#people-count")).to_have_text("1 person here")
    bob = await arrive("bob", name="bob")
    for person in (alice, bob):  # within 2 s of bob's page having loaded
        await until(person.members, ["alice", "bob"], timeout=2.0)
    await expect(alice.page.locator("#people-count")).to_have_text("2 people here")
    await expect(alice.page.locator("#members li[data-name=alice]")).to_have_text("alice (you)")
    await expect(alice.page.locator("#members li[data-name=bob]")).to_have_text("bob")
    await expect(alice.page.locator("#people")).to_have_attribute("aria-live", "polite")

    # Someone without a name is counted, not listed; they leave as soon as their stream closes.
    carol = await arrive("carol")
    await expect(alice.page.locator("#members .more")).to_have_text("and 1 more")
    await expect(alice.page.locator("#people-count")).to_have_text("3 people here")
    await expect(carol.page.locator("#members .more")).to_have_text("and 1 more")  # herself
    await carol.page.close()
    await expect(alice.page.locator("#members .more")).to_have_count(0)

    # Bob closes his page: listed for the grace, then gone.
    loop = asyncio.get_running_loop()
    await bob.page.close()
    closed = loop.time()
    while loop.time() - closed < GRACE - 0.5:
        assert await alice.members() == ["alice", "bob"], "bob left before the grace ran out"
        await asyncio.sleep(0.1)
    await until(alice.members, ["alice"], timeout=3.0)
    await expect(alice.page.locator("#people-count")).to_have_text("1 person here")


async def test_a_reload_never_shows_a_leave(arrive: Arrive) -> None:
    alice = await arrive("alice", name="alice")
    bob = await arrive("bob", name="bob")
    await until(alice.members, ["alice", "bob"], timeout=2.0)
    await alice.page.evaluate(_WATCH_LEAVES)
    for _ in range(3):
        await bob.page.reload()
        await expect(bob.status).to_have_attribute("data-state", "live")
    await asyncio.sleep(GRACE + 1.5)  # a leave would have shown by now
    assert await alice.page.evaluate("window.__leaves") == []
    assert set(await alice.page.evaluate("window.__counts")) <= {"2 people here"}
    assert await alice.members() == ["alice", "bob"]
    assert await bob.members() == ["alice", "bob"]


async def test_typing_shows_within_a_second_and_clears_when_the_message_arrives(
        arrive: Arrive) -> None:
    alice = await arrive("alice", name="alice")
    bob = await arrive("bob", name="bob")
    for person in (alice, bob):
        await expect(person.status).to_have_attribute("data-state", "live")
    line = bob.page.locator("#typing")
    await expect(line).to_have_attribute("aria-live", "polite")
    await alice.page.locator("#body").press_sequentially("on my way")
    await expect(line).to_have_text("alice is typing…", timeout=1000)
    await expect(alice.page.locator("#typing")).to_have_text("")  # not to herself
    await alice.page.locator("#body").press("Enter")
    await bob.sees("on my way")
    await expect(line).to_have_text("", timeout=300)  # the message, not the 5 s `until`
    assert len(typing_posts(alice)) == 1


@pytest.mark.server_args("--typing-seconds", "2")
async def test_typing_is_sent_every_3_s_at_most_and_ends_at_its_until(arrive: Arrive) -> None:
    alice = await arrive("alice", name="alice")
    bob = await arrive("bob", name="bob")
    carol = await arrive("carol")
    for person in (alice, bob, carol):
        await expect(person.status).to_have_attribute("data-state", "live")
    line = carol.page.locator("#typing")

    async def keep_typing() -> None:
        while True:
            await alice.page.locator("#body").press("x")
            await asyncio.sleep(0.25)

    # alice types without a pause: a notice at once, none for 3 s, then the next one. (Seen
    # from here a little late: 2 s after the first was seen is still within its 3 s.)
    loop = asyncio.get_running_loop()
    typing = asyncio.create_task(keep_typing())
    try:
        await until(lambda: len(typing_posts(alice)), 1, 5)
        await asyncio.sleep(2.0)
        assert len(typing_posts(alice)) == 1
        await until(lambda: len(typing_posts(alice)), 2, 5)
    finally:
        typing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await typing
    await asyncio.sleep(0.7)  # bob starts later, so his notice ends visibly after alice's
    await bob.page.locator("#body").press("y")
    await expect(line).to_have_text("alice and bob are typing…", timeout=1000)
    typed = loop.time()
    # Nobody types any more: alice's notice ends first, then bob's, 2 s after he typed.
    await expect(line).to_have_text("bob is typing…", timeout=3000)
    await expect(line).to_have_text("", timeout=3000)
    assert loop.time() - typed > 1.5

    # No name, no notice: the server could not say who is typing.
    await carol.page.locator("#body").press_sequentially("hello there", delay=50)
    await asyncio.sleep(0.5)
    assert typing_posts(carol) == []
    await expect(alice.page.locator("#typing")).to_have_text("")
