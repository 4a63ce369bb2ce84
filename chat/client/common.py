"""What subscribe() and publish() share: URLs, room names, the room page, error texts."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import signal
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import aiohttp
from yarl import URL

ROOM_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A message id (a cursor), as the wire contract spells one.
ID_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
XSRF_COOKIE = "_xsrf"
XSRF_HEADER = "X-XSRFToken"
_CURSOR_ATTR = re.compile(r'\bdata-cursor="([A-Za-z0-9_-]*)"')
_XSRF_INPUT = re.compile(r'name="_xsrf" value="([A-Za-z0-9_-]+)"')


def base_url(url: str) -> URL:
    """The server's base URL (``http://host:port``, maybe with a path prefix), without a trailing /."""
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"expected an http:// or https:// URL of the chat server, got {url!r}")
    return parsed.with_query(None).with_fragment(None).with_path(parsed.path.rstrip("/"))


def endpoint(base: URL, path: str) -> URL:
    """``path`` (starting with /) under ``base``, keeping base's own path prefix."""
    return base.with_path(base.path.rstrip("/") + path)


def check_room(room: str) -> str:
    if not ROOM_RE.fullmatch(room):
        raise ValueError(f"invalid room name {room!r}: use 1 to 64 of A-Z a-z 0-9 _ -")
    return room


@dataclasses.dataclass(frozen=True, slots=True)
class RoomPage:
    """What a program needs from the room's page: the ``_xsrf`` token the page's forms send, and
    the cursor of the newest message it shows (None if the page names none)."""

    xsrf: str
    cursor: str | None


class PageError(Exception):
    """The room page did not come (a status that retrying might change, or not: see ``final``)."""

    def __init__(self, status: int, text: str, final: bool) -> None:
        super().__init__(f"HTTP {status} for the room page: {text}")
        self.status = status
        self.final = final


async def room_page(session: aiohttp.ClientSession, base: URL, room: str,
                    limits: aiohttp.ClientTimeout) -> RoomPage:
    """GET /rooms/{room}, as a browser would before posting or polling."""
    async with session.get(endpoint(base, f"/rooms/{room}"), timeout=limits) as response:
        text = await response.text(errors="replace")
        if response.status != 200:
            raise PageError(response.status, error_text(text), final=response.status in (400, 404))
        morsel = response.cookies.get(XSRF_COOKIE)
        found = _XSRF_INPUT.search(text)
        xsrf = morsel.value if morsel is not None and morsel.value else (found and found.group(1))
        if not xsrf:
            raise PageError(response.status, "the page sets no _xsrf token: is this a chat server?",
                            final=True)
        cursor = _CURSOR_ATTR.search(text)
        return RoomPage(xsrf, cursor.group(1) if cursor and cursor.group(1) else None)


def error_text(body: str) -> str:
    """The server's ``{"error": ...}`` words, or the start of whatever else it answered."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    text = " ".join(body.split())
    return text[:200] + ("…" if len(text) > 200 else "") or "(empty body)"


def retry_after(headers: Any) -> float | None:
    """``Retry-After`` in seconds when it is a number (an HTTP date is rare enough to ignore)."""
    value = headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 86400 else None


def describe(exc: BaseException) -> str:
    """One line for a failed attempt."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def until_signalled(work: Awaitable[int], interrupted: Callable[[], int]) -> int:
    """Run a command's ``work`` to its exit status; SIGINT or SIGTERM cancels it and the status is
    ``interrupted()``'s (a cancellation from anywhere else is passed on)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def stop() -> None:
        stopping.set()
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        return await work
    except asyncio.CancelledError:
        if not stopping.is_set():
            raise
        return interrupted()


class OneLineParser(argparse.ArgumentParser):
    """The commands' argument parser: a bad argument is one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def room_argument(text: str) -> str:
    if not ROOM_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected 1 to 64 of A-Z a-z 0-9 _ -, got {text!r}")
    return text
