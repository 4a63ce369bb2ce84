"""The connection status: plain words, written to its live region only when the state changes,
and true: a polling tab says "Connected" soon after the server is back."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from ..support import until
from .server import Api, ChatServer
from .support import Arrive

WORDS = {"live": "Connected", "polling": "Connected (compatibility mode)"}

# Counts every change to #status's text (what a screen reader would announce).
_COUNT_WRITES = """() => {
  window.__statusWrites = 0;
  new MutationObserver(function (records) { window.__statusWrites += records.length; })
    .observe(document.getElementById("status"), {childList: true, characterData: true, subtree: true});
}"""


@pytest.mark.parametrize("transport", ["live", "polling"])
async def test_status_is_written_once_not_once_per_message(arrive: Arrive, api: Api,
                                                           transport: str) -> None:
    alice = await arrive("alice", polling=transport == "polling")
    await expect(alice.status).to_have_attribute("data-state", transport)
    await expect(alice.status).to_have_text(WORDS[transport])
    await expect(alice.status).to_have_attribute("role", "status")
    await alice.page.evaluate(_COUNT_WRITES)
    for n in range(3):
        await api.post(f"message {n}")
        await alice.sees(f"message {n}")
    await alice.say("and one of mine")
    await alice.sees("and one of mine")
    await until(alice.ids, await api.history_ids())
    assert await alice.page.evaluate("window.__statusWrites") == 0
    assert await alice.states() == ["connecting", transport]


async def test_polling_tab_says_connected_within_2_s_of_the_servers_return(
        arrive: Arrive, api: Api, server: ChatServer) -> None:
    """A long-poll that waits sends nothing, so only a poll's answer used to set the status: up to
    the poll timeout (and a backoff that had grown while the server was away) after its return."""
    bob = await arrive("bob", polling=True)
    await expect(bob.status).to_have_attribute("data-state", "polling")
    await server.stop()
    await expect(bob.status).to_have_attribute("data-state", "reconnecting")
    await expect(bob.status).to_have_text("Reconnecting…")
    # Away long enough for a doubling backoff to have grown past 2 s.
    await bob.page.wait_for_timeout(5000)
    await expect(bob.status).to_have_attribute("data-state", "reconnecting")
    await server.start()  # returns once the server listens
    await bob.page.wait_for_function(
        "() => document.getElementById('status').dataset.state === 'polling'", polling=50, timeout=2000)
    await expect(bob.status).to_have_text("Connected (compatibility mode)")
    # And it really is connected: the next message arrives.
    await api.post("you are back")
    await bob.sees("you are back")


@pytest.mark.parametrize("transport", ["live", "polling"])
async def test_offline_says_offline_and_back_online_says_connected(arrive: Arrive, api: Api,
                                                                   transport: str) -> None:
    alice = await arrive("alice", polling=transport == "polling")
    await expect(alice.status).to_have_attribute("data-state", transport)
    await alice.context.set_offline(True)
    await expect(alice.status).to_have_text("Offline")
    await alice.context.set_offline(False)
    await expect(alice.status).to_have_text(WORDS[transport])
