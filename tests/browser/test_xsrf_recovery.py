"""The page's XSRF token stops being valid, and the page recovers without a reload.

The memory store keeps the server secret in RAM: a restart makes a new one, and every token
the open pages hold is refused (403). The page then fetches itself once (HEAD: the server hands
out a fresh cookie when the one it gets fails the check) and sends again. A 403 that stays a
403 is shown, after exactly one retry.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Route, expect

from ..support import until
from .server import Api, ChatServer
from .support import Arrive, Person

TRANSPORTS = ["eventsource", "polling"]
STATE = {"eventsource": "live", "polling": "polling"}


def heads(person: Person) -> list[str]:
    return [r for r in person.requests if r.startswith("HEAD ")]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_restart_with_a_new_secret_needs_no_reload(arrive: Arrive, api: Api,
                                                           server: ChatServer,
                                                           transport: str) -> None:
    alice = await arrive("alice", polling=transport == "polling")
    await expect(alice.status).to_have_attribute("data-state", STATE[transport])
    old_token = next(c["value"] for c in await alice.context.cookies() if c["name"] == "_xsrf")
    await alice.say("before the restart")
    await alice.sees("before the restart")
    await alice.mark_document()
    assert heads(alice) == []

    await server.stop()
    await server.start()  # a new memory store: a new secret, so old_token is refused now

    # (A poller that failed while the server was down waits out its backoff first.)
    await expect(alice.status).to_have_attribute("data-state", STATE[transport], timeout=20000)
    await alice.say("after the restart")
    await alice.sees("after the restart")
    assert [m["body"] for m in await api.history()] == ["after the restart"]
    assert await alice.same_document(), "the page was reloaded"
    new_token = next(c["value"] for c in await alice.context.cookies() if c["name"] == "_xsrf")
    assert new_token != old_token
    # The page fetched itself for the new cookie: once for the send (and, polling, once more
    # for the poll that met the new secret first, unless the send's cookie came before it).
    assert 1 <= len(heads(alice)) <= (2 if transport == "polling" else 1), alice.requests
    await alice.say("and on")
    await alice.sees("and on")
    assert len(heads(alice)) <= 2


async def test_a_lost_cookie_is_fetched_again(arrive: Arrive, api: Api) -> None:
    alice = await arrive("alice")
    await expect(alice.status).to_have_attribute("data-state", "live")
    await alice.mark_document()
    await alice.context.clear_cookies()
    await alice.say("hello")
    await alice.sees("hello")
    assert [m["body"] for m in await api.history()] == ["hello"]
    assert heads(alice) == ["HEAD " + alice.page.url]
    assert await alice.same_document(), "the page was reloaded"


async def test_a_403_that_stays_is_shown_after_one_retry(arrive: Arrive) -> None:
    alice = await arrive("alice")
    await expect(alice.status).to_have_attribute("data-state", "live")

    async def refuse(route: Route) -> None:
        await route.fulfill(status=403, content_type="application/json",
                            body='{"error": "cross-origin request refused"}')

    await alice.page.route("**/a/message/new", refuse)
    await alice.say("hello")
    error = alice.page.locator("#send-error")
    await expect(error).to_contain_text("Not sent: cross-origin request refused")
    refused = alice.pending.filter(has_text="hello")
    await expect(refused.locator(".send-state")).to_have_text("Not sent")
    await until(lambda: _count(alice), (2, 1))  # two posts, one page fetch between: no loop


async def _count(person: Person) -> tuple[int, int]:
    return len(person.requested("/a/message/new")), len(heads(person))
