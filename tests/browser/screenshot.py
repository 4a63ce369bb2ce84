"""Regenerate the README's screenshot: two people chatting, one over EventSource, one polling.

    make screenshot                              # writes docs/chat.png
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

from playwright.async_api import async_playwright, expect

from .server import ROOT, SERVER_ARGS, ChatServer
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


async def take(out: Path, chromium: str = CHROMIUM) -> None:
    server = ChatServer(*SERVER_ARGS)
    await server.start()
    try:
        # Chromium writes caches and crash-report folders under $HOME: keep them out of yours.
        with tempfile.TemporaryDirectory(prefix="chat-screenshot-") as home:
            await _chat_and_shoot(out, chromium, server, home)
    finally:
        await server.stop()


async def _chat_and_shoot(out: Path, chromium: str, server: ChatServer, home: str) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS,
                                           env={**os.environ, "HOME": home})
        try:
            size = {"width": 760, "height": 330}
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
    asyncio.run(take(args.out, args.chromium))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
