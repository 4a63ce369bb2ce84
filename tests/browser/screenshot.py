"""Regenerate the README's screenshots: two people chatting, one over EventSource, one polling
(``chat.png``), and the page on a phone in light mode and on a desktop in dark mode, with bob in
the room and typing (``chat-phone-light.png``, ``chat-desktop-dark.png``, written next to it).

    make screenshot                              # writes docs/chat.png and the two others
    python -m tests.browser.screenshot OUT.png   # the same, anywhere

Starts ``python -m chat`` on a free port and Debian's Chromium, like the browser tests do.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright, expect

from .server import ROOT, SERVER_ARGS, Api, ChatServer
from .support import CHROMIUM, CHROMIUM_ARGS, Person

CONVERSATION = [
    ("alice", "hi bob! is the new chat server up?"),
    ("bob", "it is: you are on EventSource, I am long-polling"),
    ("alice", "and we still see the same list, in the same order"),
    ("bob", "even after a restart or a dropped connection :)"),
    ("alice", "<b>markup</b> stays text, too"),
]

FRAME = """<!doctype html><meta charset="utf-8">
<style>
  body { margin: 0; padding: 16px; background: #f3f4f6; font: 14px system-ui, "DejaVu Sans", sans-serif;
         display: flex; flex-direction: column; gap: 16px; width: max-content; }
  figure { margin: 0; background: #fff; border: 1px solid #d1d5db; border-radius: 8px; overflow: hidden;
           box-shadow: 0 1px 3px rgba(0, 0, 0, .12); }
  figcaption { padding: 6px 12px; background: #e5e7eb; color: #374151; }
  img { display: block; }
</style>
<figure><figcaption>alice &middot; EventSource</figcaption>
  <img src="data:image/png;base64,{left}"></figure>
<figure><figcaption>bob &middot; long-polling (no EventSource)</figcaption>
  <img src="data:image/png;base64,{right}"></figure>
"""


# The phone and desktop pictures: a room with a link, a right-to-left line and two lines in one.
ROOM = [
    ("alice", "morning! the deploy went out at 9"),
    ("bob", "nice. the dashboard is at https://example.com/status and all green"),
    ("سارة", "مرحبا! كل شيء يعمل هنا أيضا"),
    ("alice", "two things for later:\n1. the release notes\n2. lunch"),
    ("bob", "count me in for 2 :)"),
]
DEVICES: dict[str, dict[str, Any]] = {
    "chat-phone-light.png": {"viewport": {"width": 360, "height": 640}, "device_scale_factor": 2,
                             "has_touch": True, "is_mobile": True, "color_scheme": "light"},
    "chat-desktop-dark.png": {"viewport": {"width": 900, "height": 560}, "color_scheme": "dark"},
}


async def take(out: Path, chromium: str = CHROMIUM) -> list[Path]:
    """Writes ``out`` and the device pictures next to it; the paths written."""
    server = ChatServer(*SERVER_ARGS)
    await server.start()
    try:
        # Chromium writes caches and crash-report folders under $HOME: keep them out of yours.
        with tempfile.TemporaryDirectory(prefix="chat-screenshot-") as home:
            await _chat_and_shoot(out, chromium, server, home)
            return [out, *await _devices(out.parent, chromium, server, home)]
    finally:
        await server.stop()


async def _devices(out_dir: Path, chromium: str, server: ChatServer, home: str) -> list[Path]:
    api = Api(server)
    try:
        for name, line in ROOM:
            await api.post(line, name=name, room="team")
    finally:
        await api.close()
    written = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS,
                                           env={**os.environ, "HOME": home})
        try:
            # Bob is in the room too, and typing when each picture is taken.
            bob = await Person.arrive(browser, server.url + "/rooms/team", label="bob", name="bob")
            await expect(bob.status).to_have_attribute("data-state", "live")
            for filename, options in DEVICES.items():
                person = await Person.arrive(browser, server.url + "/rooms/team", label=filename,
                                             locale="en-US", timezone_id="UTC", **options)
                await person.page.locator("#name").fill("alice")
                await expect(person.status).to_have_attribute("data-state", "live")
                await expect(person.messages).to_have_count(len(ROOM))
                await person.page.locator("#body").fill("sure, 12:30?")
                await person.page.locator("#body").blur()
                await expect(person.page.locator("#members li[data-name=alice]")).to_be_attached()
                await _typing(server, person, "bob", "team")
                written.append(out_dir / filename)
                await person.page.screenshot(path=written[-1])
                await person.close()
        finally:
            await browser.close()
    return written


async def _typing(server: ChatServer, person: Person, name: str, room: str) -> None:
    """Until ``person`` sees that ``name`` is typing (one notice per name every 2 s is relayed)."""
    api = Api(server)
    try:
        for _ in range(10):
            await api.typing(name, room=room)
            try:
                await expect(person.page.locator("#typing")).to_have_text(f"{name} is typing…",
                                                                         timeout=500)
                return
            except AssertionError:
                continue
        raise AssertionError(f"{person.label} never saw {name} typing")
    finally:
        await api.close()


async def _chat_and_shoot(out: Path, chromium: str, server: ChatServer, home: str) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS,
                                           env={**os.environ, "HOME": home})
        try:
            size = {"width": 760, "height": 400}
            people = {
                "alice": await Person.arrive(browser, server.url + "/", label="alice", viewport=size),
                "bob": await Person.arrive(browser, server.url + "/", label="bob", viewport=size,
                                           polling=True),
            }
            for name, person in people.items():
                await person.page.locator("#name").fill(name)
            for name, line in CONVERSATION:
                await people[name].say(line)
                for person in people.values():
                    await person.sees(line)
            for person in people.values():  # a clean composer, no focus ring
                await person.page.locator("#body").blur()
            await expect(people["alice"].status).to_have_attribute("data-state", "live")
            await expect(people["bob"].status).to_have_attribute("data-state", "polling")
            for person in people.values():  # a poller asks who is here every 5 s
                await expect(person.page.locator("#people-count")).to_have_text(
                    "2 people here", timeout=10_000)
            left, right = [base64.b64encode(await p.page.screenshot()).decode()
                           for p in people.values()]
            frame = await browser.new_page(viewport={"width": 794, "height": 100})
            await frame.set_content(FRAME.replace("{left}", left).replace("{right}", right))
            out.parent.mkdir(parents=True, exist_ok=True)
            await frame.screenshot(path=out, full_page=True)
        finally:
            await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.browser.screenshot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, default=ROOT / "docs" / "chat.png",
                        help="where to write the PNG (default: docs/chat.png)")
    parser.add_argument("--chromium", default=CHROMIUM, help=f"browser binary (default: {CHROMIUM})")
    args = parser.parse_args()
    if not Path(args.chromium).exists():
        sys.exit(f"chromium not found at {args.chromium}: "
                 "apt-get install -y --no-install-recommends chromium")
    for path in asyncio.run(take(args.out, args.chromium)):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
