"""A server on the SQLite store restarted under an open page: the page keeps its list, the stream
(or long-poll) resumes from its cursor, and what was said meanwhile arrives once, in order."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import expect

from ..support import sqlite_url, until
from .server import SERVER_ARGS, Api, ChatServer
from .support import Arrive, Person

STATE = {"eventsource": "live", "polling": "polling"}

# Counts every message element taken out of the list (a reset empties it).
_COUNT_REMOVALS = """
window.__chatRemoved = 0;
new MutationObserver(function (records) {
  records.forEach(function (r) {
    r.removedNodes.forEach(function (n) {
      if (n.classList && n.classList.contains("message")) window.__chatRemoved += 1;
    });
  });
}).observe(document.getElementById("inbox"), {childList: true});
"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ChatServer]:
    """``python -m chat`` on a SQLite file of this test's own (the suite's default is memory)."""
    srv = ChatServer(*SERVER_ARGS, "--store", sqlite_url(tmp_path / "chat.db"))
    srv.start_soon()
    yield srv
    with contextlib.suppress(Exception):
        await srv.ready()
    if srv.running:
        assert await srv.stop() == 0, srv.log


async def removed(person: Person) -> int:
    count: int = await person.page.evaluate("window.__chatRemoved")
    return count


@pytest.mark.parametrize("transport", ["eventsource", "polling"])
async def test_a_clean_restart_keeps_the_page_and_its_place(arrive: Arrive, api: Api,
                                                            server: ChatServer,
                                                            transport: str) -> None:
    alice = await arrive("alice", polling=transport == "polling")
    await expect(alice.status).to_have_attribute("data-state", STATE[transport])
    for n in range(3):
        await api.post(f"before {n}")
    before = await api.history_ids()
    await until(alice.ids, before)
    await alice.mark_document()
    await alice.page.evaluate(_COUNT_REMOVALS)

    await server.stop()
    await expect(alice.status).to_have_attribute("data-state", "reconnecting")
    await server.start()
    assert server.returncodes == [0], server.log
    # Said before the page is back: its resume from the old cursor must bring it.
    await api.post("while the page reconnects")
    await expect(alice.status).to_have_attribute("data-state", STATE[transport])
    await api.post("after")
    history = await api.history_ids()
    assert history[:3] == before and len(history) == 5, "the restart lost or renamed history"
    await until(alice.ids, history)
    assert await removed(alice) == 0, "the page was reset: its list was emptied"
    assert await alice.same_document(), "the page was reloaded"
    assert await alice.bodies() == ["before 0", "before 1", "before 2",
                                    "while the page reconnects", "after"]
