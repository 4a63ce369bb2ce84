"""The rooms on /: the active ones (people here, the last message) and a field to open or create a
room by name, which refuses a name the server would not take and says why. With and without
script."""

from __future__ import annotations

import re

from playwright.async_api import expect

from .server import Api, ChatServer
from .support import Arrive

PHONE = {"viewport": {"width": 360, "height": 640}, "has_touch": True, "is_mobile": True}
DESKTOP = {"viewport": {"width": 1024, "height": 700}}


async def test_the_index_lists_active_rooms_with_people_and_opens_one(arrive: Arrive, api: Api,
                                                                     server: ChatServer) -> None:
    await api.post("hi", room="lobby")
    await api.post("anyone?", room="design")
    bob = await arrive("bob", url=server.url + "/rooms/design", name="bob")
    await expect(bob.status).to_have_attribute("data-state", "live")
    await expect(bob.page.get_by_role("link", name="All rooms")).to_have_attribute("href", "/#rooms")

    alice = await arrive("alice", **DESKTOP)
    rooms = alice.page.get_by_role("list", name="Active rooms")
    await expect(rooms).to_be_visible()  # a wide screen shows the panel open
    # People first, then the newest message; after the page, the script keeps it fresh.
    await expect(rooms.get_by_role("listitem")).to_have_text([
        re.compile(r"^#design 1 person here · last message (just now|\d+ minutes? ago)$"),
        re.compile(r"^#main 1 person here$"),
        re.compile(r"^#lobby nobody here · last message (just now|\d+ minutes? ago)$"),
    ])
    await expect(rooms.get_by_role("link", name="#main")).to_have_attribute("aria-current", "page")
    await rooms.get_by_role("link", name="#lobby").click()
    await expect(alice.page).to_have_url(server.url + "/rooms/lobby")
    await expect(alice.page.get_by_role("heading", level=1)).to_have_text("#lobby")
    await alice.sees("hi")


async def test_the_field_opens_or_creates_a_room_and_refuses_a_bad_name(arrive: Arrive,
                                                                        server: ChatServer) -> None:
    alice = await arrive("alice", **PHONE)
    page = alice.page
    summary = page.locator("#rooms summary")
    await expect(page.get_by_label("Open or create a room")).to_be_hidden()  # folded on a phone
    await summary.focus()
    await page.keyboard.press("Enter")
    field = page.get_by_label("Open or create a room")
    await expect(field).to_be_visible()

    error = page.locator("#room-error")
    await field.fill("no spaces!")
    await field.press("Enter")
    await expect(error).to_have_text(
        "“no spaces!” cannot be a room name: use letters, digits, _ and -, up to 64.")
    await expect(error).to_have_attribute("role", "alert")
    await expect(field).to_be_focused()
    await expect(field).to_have_attribute("aria-invalid", "true")
    await expect(page).to_have_url(server.url + "/")
    await field.fill("")
    await expect(error).to_be_hidden()  # typing again clears it
    await field.press("Enter")
    await expect(error).to_have_text("Type a room name first.")

    await field.fill("new-room_2")
    await field.press("Enter")
    await expect(page).to_have_url(server.url + "/rooms/new-room_2")
    await expect(page.get_by_role("heading", level=1)).to_have_text("#new-room_2")
    await expect(page.locator("#empty")).to_be_visible()


async def test_without_script_the_list_and_the_field_still_work(arrive: Arrive, api: Api,
                                                                server: ChatServer) -> None:
    await api.post("hi", room="lobby")
    alice = await arrive("alice", java_script_enabled=False, **DESKTOP)
    page = alice.page
    await page.get_by_text("Rooms", exact=True).click()  # <details> opens without script
    await expect(page.get_by_role("link", name="#lobby")).to_be_visible()
    await expect(page.locator("#room-list .meta")).to_have_text(
        re.compile(r"^nobody here · last message \d\d:\d\d UTC$"))
    await page.get_by_label("Open or create a room").fill("quiet")
    await page.get_by_role("button", name="Open").click()
    await expect(page).to_have_url(server.url + "/rooms/quiet")
    await expect(page.get_by_role("heading", level=1)).to_have_text("#quiet")
