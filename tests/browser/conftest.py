"""Fixtures for the browser suite: Chromium, a real ``python -m chat`` server, people at the page.

Pattern A of the recipes: async Playwright on each test's own event loop (no thread, no second
loop). Fixtures are not called ``browser`` or ``page`` so pytest-playwright, if installed, keeps
out of the way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Generator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright

from ..support import sqlite_url
from .proxy import TcpProxy
from .server import SERVER_ARGS, Api, ChatServer
from .support import CHROMIUM, CHROMIUM_ARGS, INSTALL_HINT, Arrive, Person

# Diagnostics shown under a failed test: (title, text producer), filled by the fixtures below.
diagnostics_key = pytest.StashKey[list[tuple[str, Callable[[], str]]]]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                        pytest.TestReport]:
    report = yield
    if report.failed:
        for title, text in item.stash.get(diagnostics_key, []):
            report.sections.append((title, text() or "(empty)"))
    return report


def _diagnose(request: pytest.FixtureRequest, title: str, text: Callable[[], str]) -> None:
    request.node.stash.setdefault(diagnostics_key, []).append((title, text))


@pytest.fixture
def chromium_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Debian's Chromium; a skip with the install command when it is missing (a failure under CI).

    Playwright's temporary profiles ($TMPDIR) and Chromium's caches ($HOME/.cache) go under this
    test's tmp_path, not into /tmp or the home directory.
    """
    if not os.access(CHROMIUM, os.X_OK):
        if os.environ.get("CHAT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"CHAT_REQUIRE_BROWSER=1 but {INSTALL_HINT}")
        pytest.skip(INSTALL_HINT)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return CHROMIUM


@pytest.fixture
async def chromium(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ChatServer]:
    """A fresh ``python -m chat`` (in-memory store) on a free port, stopped after the test.

    ``@pytest.mark.server_args(*args)`` adds options; ``@pytest.mark.sqlite`` serves from a SQLite
    file of the test's own (where older messages outlive the RAM window: scroll-back).
    It boots while Chromium launches; ``arrive`` and ``api`` wait until it listens.
    """
    args = list(SERVER_ARGS)
    for mark in request.node.iter_markers("server_args"):
        args.extend(mark.args)
    if request.node.get_closest_marker("sqlite") is not None:
        args.extend(["--store", sqlite_url(tmp_path / "chat.db"), "--sqlite-sync", "normal"])
    srv = ChatServer(*args)
    _diagnose(request, "python -m chat stderr", lambda: srv.log)
    srv.start_soon()
    yield srv
    with contextlib.suppress(Exception):  # a failed boot was reported where it was awaited
        await srv.ready()
    if srv.running:
        # SIGTERM must end every stream and poll at once and exit cleanly.
        assert await srv.stop() == 0, srv.log


@pytest.fixture
async def api(server: ChatServer) -> AsyncIterator[Api]:
    await server.ready()
    client = Api(server)
    yield client
    await client.close()


@pytest.fixture
async def proxy(server: ChatServer) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of ``server`` that the test can make drop connections."""
    await server.ready()
    tcp = TcpProxy(server)
    await tcp.start()
    yield tcp
    await tcp.close()


@pytest.fixture
async def arrive(request: pytest.FixtureRequest, server: ChatServer,
                 chromium: Browser) -> AsyncIterator[Arrive]:
    """``await arrive(label, url=..., polling=..., **context_options)``: a person at the page.

    After the test, no page may have thrown an uncaught error or opened a dialog.
    """
    await server.ready()
    people: list[Person] = []

    async def arrive_(label: str, url: str | None = None, **options: Any) -> Person:
        person = await Person.arrive(chromium, server.url + "/" if url is None else url,
                                     label=label, **options)
        people.append(person)
        _diagnose(request, f"{label}: browser console", lambda: "\n".join(person.console))
        return person

    yield arrive_
    for person in people:
        await person.close()
    for person in people:
        assert not person.errors, f"{person.label}: uncaught errors in the page: {person.errors}"
        assert not person.dialogs, f"{person.label}: the page opened a dialog: {person.dialogs}"
