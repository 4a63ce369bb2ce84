"""Where the list is: scrolled up, new messages wait behind a "N new messages" button; one's own
message always brings the list down; a hidden tab counts unread messages in its title."""

from __future__ import annotations

from playwright.async_api import expect

from .server import Api, ChatServer
from .support import Arrive, Person

DESKTOP = {"viewport": {"width": 800, "height": 600}}

_DISTANCE_TO_END = "el => el.scrollHeight - el.scrollTop - el.clientHeight"

# Headless Chromium never hides a page, so the test plays the browser's part: it sets what
# document.hidden reports and fires visibilitychange, as a browser does when the tab goes back.
_CONTROLLABLE_VISIBILITY = """
(() => {
  let hidden = false;
  Object.defineProperty(Document.prototype, "hidden", {configurable: true, get: () => hidden});
  Object.defineProperty(Document.prototype, "visibilityState", {configurable: true,
                        get: () => hidden ? "hidden" : "visible"});
  window.__setHidden = value => { hidden = value; document.dispatchEvent(new Event("visibilitychange")); };
})();
"""


async def scrolled_up(person: Person, api: Api, count: int = 40) -> None:
    """``count`` messages, then the reader scrolls to the top with the mouse wheel."""
    for n in range(count):
        await api.post(f"earlier message {n}")
    await person.sees(f"earlier message {count - 1}")
    inbox = person.page.locator("#inbox")
    assert await inbox.evaluate(_DISTANCE_TO_END) < 1, "a new page starts at the newest message"
    await inbox.hover()
    await person.page.mouse.wheel(0, -100_000)
    await expect(inbox).to_have_js_property("scrollTop", 0)


async def test_scrolled_up_a_pill_counts_new_messages_and_takes_you_down(arrive: Arrive,
                                                                         api: Api) -> None:
    alice = await arrive("alice", **DESKTOP)
    await expect(alice.status).to_have_attribute("data-state", "live")
    await scrolled_up(alice, api)
    pill = alice.page.locator("#new-messages")
    await expect(pill).to_be_hidden()

    await api.post("new one")
    await alice.sees("new one")
    await expect(pill).to_have_text("1 new message ↓")
    for n in range(2):
        await api.post(f"new {n}")
    await alice.sees("new 1")
    await expect(pill).to_have_text("3 new messages ↓")
    inbox = alice.page.locator("#inbox")
    assert await inbox.evaluate("el => el.scrollTop") == 0, "the list moved under the reader"

    await pill.click()
    await expect(pill).to_be_hidden()
    assert await inbox.evaluate(_DISTANCE_TO_END) < 1
    await expect(inbox).to_be_focused()  # the button is gone: keyboard focus goes to the list
    # Back at the end, new messages keep it there and need no button.
    await api.post("while at the end")
    await alice.sees("while at the end")
    assert await inbox.evaluate(_DISTANCE_TO_END) < 1
    await expect(pill).to_be_hidden()


async def test_scrolling_down_yourself_hides_the_pill(arrive: Arrive, api: Api) -> None:
    alice = await arrive("alice", **DESKTOP)
    await scrolled_up(alice, api)
    await api.post("new one")
    pill = alice.page.locator("#new-messages")
    await expect(pill).to_be_visible()
    await alice.page.mouse.wheel(0, 100_000)
    await expect(pill).to_be_hidden()


async def test_your_own_message_brings_the_list_down(arrive: Arrive, api: Api) -> None:
    alice = await arrive("alice", **DESKTOP)
    await expect(alice.status).to_have_attribute("data-state", "live")
    await scrolled_up(alice, api)
    await alice.say("mine")
    await alice.sees("mine")
    assert await alice.page.locator("#inbox").evaluate(_DISTANCE_TO_END) < 1
    await expect(alice.page.locator("#new-messages")).to_be_hidden()


async def test_a_hidden_tab_counts_unread_messages_in_its_title(arrive: Arrive, api: Api,
                                                                server: ChatServer) -> None:
    alice = await arrive("alice", url="")
    await alice.context.add_init_script(_CONTROLLABLE_VISIBILITY)
    await alice.page.goto(server.url + "/")
    await expect(alice.status).to_have_attribute("data-state", "live")
    await expect(alice.page).to_have_title("#main · Chat")
    await api.post("seen while visible")
    await alice.sees("seen while visible")

    await alice.page.evaluate("window.__setHidden(true)")
    await api.post("one")
    await alice.sees("one")
    await expect(alice.page).to_have_title("(1) #main · Chat")
    await api.post("two")
    await alice.sees("two")
    await expect(alice.page).to_have_title("(2) #main · Chat")

    await alice.page.evaluate("window.__setHidden(false)")
    await expect(alice.page).to_have_title("#main · Chat")
