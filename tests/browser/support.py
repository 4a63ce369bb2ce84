"""Chromium for the browser tests, and a person at the chat page.

Nothing here or in ``server.py`` and ``proxy.py`` depends on pytest: ``screenshot.py`` uses them too.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Dialog, Page, Request, expect

CHROMIUM = "/usr/bin/chromium"
# Headless, no sandbox (CI runs as root), and nothing that phones home or updates itself while
# a test runs: the flags verified with Debian's Chromium and Playwright's async API.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
INSTALL_HINT = f"chromium not found at {CHROMIUM}: apt-get install -y --no-install-recommends chromium"


# Runs before the page's own script: records each state #status shows, so a test can check the
# page passed through "offline" or "reconnecting" even when that lasted a moment.
_RECORD_STATES = """
window.__chatStates = [];
new MutationObserver(function () {
  var status = document.getElementById("status"), seen = window.__chatStates;
  var state = status && status.dataset.state;
  if (state && seen[seen.length - 1] !== state) seen.push(state);
}).observe(document, {subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"]});
"""


class Person:
    """Someone at the chat page in their own browser context (own cookies and storage).

    Every uncaught page error, console line and dialog is recorded: the fixtures fail a test
    whose page threw or opened a dialog, and show the console when a test fails.
    """

    def __init__(self, label: str, context: BrowserContext, page: Page) -> None:
        self.label = label
        self.context = context
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.console: list[str] = []
        self.requests: list[str] = []  # "METHOD url" of every request the page made
        self.posts: list[tuple[str, str]] = []  # (url, body) of every POST the page made
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._on_console)
        page.on("dialog", self._on_dialog)
        page.on("request", self._on_request)

    @classmethod
    async def arrive(cls, browser: Browser, url: str, *, label: str = "person", polling: bool = False,
                     name: str | None = None, **context_options: Any) -> Person:
        """A new context at ``url``; ``polling``: with ``window.EventSource`` removed before load;
        ``name``: the nickname the browser remembers (set before every load of its pages)."""
        context = await browser.new_context(**context_options)
        await context.add_init_script(_RECORD_STATES)
        if polling:
            await context.add_init_script("delete window.EventSource;")
        if name is not None:
            await context.add_init_script(f"localStorage.setItem('chat.name', {json.dumps(name)});")
        person = cls(label, context, await context.new_page())
        if url:
            await person.page.goto(url)
        return person

    def _on_request(self, request: Request) -> None:
        self.requests.append(f"{request.method} {request.url}")
        if request.method == "POST":
            self.posts.append((request.url, request.post_data or ""))

    def _on_console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    async def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    def requested(self, path: str) -> list[str]:
        return [r for r in self.requests if r.split(" ", 1)[1].split("?")[0].endswith(path)]

    async def states(self) -> list[str]:
        """Every ``#status`` data-state this document has shown, in order (repeats collapsed)."""
        states: list[str] = await self.page.evaluate("window.__chatStates")
        return states

    async def mark_document(self) -> None:
        """Tag the current document; ``same_document()`` is False after any reload or navigation."""
        await self.page.evaluate("window.__chatMark = true")

    async def same_document(self) -> bool:
        return bool(await self.page.evaluate("window.__chatMark === true"))

    @property
    def status(self) -> Any:
        return self.page.locator("#status")

    @property
    def messages(self) -> Any:
        """Messages the server has stored: a message of one's own shows at once as "Sending…"
        but only gets its id (``m<id>``) once the server answered."""
        return self.page.locator("#inbox .message[id]")

    @property
    def pending(self) -> Any:
        """This page's own messages the server has not confirmed: sending, or not sent."""
        return self.page.locator("#inbox .message.pending")

    async def say(self, text: str) -> None:
        """Type into the message box and press Enter, as a person would."""
        await self.page.locator("#body").fill(text)
        await self.page.locator("#body").press("Enter")

    async def sees(self, text: str, timeout: float = 5000) -> None:
        """Wait until a message containing ``text`` is on this person's page."""
        await expect(self.messages.filter(has_text=text)).to_be_visible(timeout=timeout)

    async def ids(self) -> list[str]:
        """The message ids on the page, top to bottom (DOM id ``m<id>`` without the ``m``)."""
        ids: list[str] = await self.messages.evaluate_all("els => els.map(e => e.id.slice(1))")
        return ids

    async def timeline(self) -> list[str]:
        """The list top to bottom: each stored message's id, ``~id`` for one kept (dimmed) from
        before a history reset, ``|`` for a reset divider. Day headings and unsent messages are
        left out."""
        timeline: list[str] = await self.page.locator("#inbox").evaluate("""inbox => Array.from(
            inbox.querySelectorAll(".message[id], .divider"),
            e => e.classList.contains("divider") ? "|"
                 : (e.classList.contains("stale") ? "~" : "") + e.id.slice(1))""")
        return timeline

    async def members(self) -> list[str]:
        """The names in the list of who is here, in order (without "(you)" or "and N more")."""
        names: list[str] = await self.page.locator("#members li[data-name]").evaluate_all(
            "els => els.map(e => e.dataset.name)")
        return names

    async def bodies(self) -> list[str]:
        bodies: list[str] = await self.messages.locator(".body").all_text_contents()
        return bodies

    async def close(self) -> None:
        await self.context.close()


# The ``arrive`` fixture: ``await arrive(label, url=..., polling=..., **context_options)``.
Arrive = Callable[..., Awaitable[Person]]


