"""Losing the connection and getting it back: a server restart (the list is kept above a reset
divider), the browser offline, a proxy dropping the stream mid-event, and a send that fails."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Route, expect

from ..support import until
from .proxy import TcpProxy, sse_events
from .server import Api, ChatServer
from .support import Arrive, Person

TRANSPORTS = ["eventsource", "polling"]
STATE = {"eventsource": "live", "polling": "polling"}


async def test_server_restart_keeps_what_was_shown_above_a_reset_divider(
        arrive: Arrive, api: Api, server: ChatServer) -> None:
    """In-memory store: the restarted server has a new epoch and no history. Both pages keep
    the old list (dimmed) above one divider saying the history was reset, then show the new
    history, each message once, and keep chatting without a reload."""
    alice = await arrive("alice")
    bob = await arrive("bob", polling=True)
    await expect(alice.status).to_have_attribute("data-state", "live")
    await expect(bob.status).to_have_attribute("data-state", "polling")
    for n in range(3):
        await api.post(f"old {n}")
    old = await api.history_ids()
    for person in (alice, bob):
        await until(person.ids, old)
        await person.mark_document()

    await server.stop()
    await expect(alice.status).to_have_attribute("data-state", "reconnecting")
    await expect(bob.status).to_have_attribute("data-state", "reconnecting")
    await server.start()
    assert server.returncodes == [0]

    # The stream's reconnect carries an id of the old epoch: the server answers with a reset
    # at once, before anyone speaks. What alice saw stays on screen, dimmed, above the divider.
    await expect(alice.status).to_have_attribute("data-state", "live")
    await until(alice.timeline, [f"~{i}" for i in old] + ["|"])
    divider = alice.page.locator("#inbox[role=log] > .divider")  # in the log: announced once
    await expect(divider).to_have_text(re.compile(r"history was reset\. Earlier messages may be missing"))
    await expect(alice.page.locator("#inbox .message.stale")).to_have_count(3)

    await alice.say("anyone here after the restart?")
    await bob.sees("anyone here after the restart?")
    await bob.say("yes, still here")
    await alice.sees("yes, still here")
    new = await api.history_ids()
    assert len(new) == 2 and not set(new) & set(old)
    # The poller learns of the reset with the first new message ("reset": true); same result.
    for person in (alice, bob):
        await until(person.timeline, [f"~{i}" for i in old] + ["|", *new])
        await expect(person.page.locator("#inbox .divider")).to_have_count(1)
        assert await person.same_document(), f"{person.label}'s page was reloaded"
    await expect(bob.status).to_have_attribute("data-state", "polling")

    # Another restart loses the history again: said once more, everything shown stays, once.
    await server.stop()
    await server.start()
    last = await api.post("after the second restart")
    stale = [f"~{i}" for i in old + new]
    for person in (alice, bob):
        await until(person.timeline, [*stale[:3], "|", *stale[3:], "|", last["id"]])


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_offline_while_50_messages_are_posted(arrive: Arrive, api: Api, transport: str) -> None:
    alice = await arrive("alice", polling=transport == "polling")
    await expect(alice.status).to_have_attribute("data-state", STATE[transport])
    for n in range(2):
        await api.post(f"before {n}")
    await until(alice.ids, await api.history_ids())
    await alice.mark_document()

    await alice.context.set_offline(True)
    await expect(alice.status).to_have_attribute("data-state", "offline")
    for n in range(50):
        await api.post(f"while offline {n}")
    # The page really is cut off (Chromium's offline mode leaves open connections alone; the
    # page must close them itself), so what follows tests recovery, not a stream that never broke.
    await asyncio.sleep(0.5)
    await expect(alice.messages).to_have_count(2)

    await alice.context.set_offline(False)
    history = await api.history_ids()
    assert len(history) == 52
    await until(alice.ids, history)  # each of the 50 once, in order, after the first two
    await expect(alice.status).to_have_attribute("data-state", STATE[transport])
    assert await alice.same_document(), "the page was reloaded"
    # Still chatting afterwards.
    await alice.say("back online")
    await alice.sees("back online")
    await until(alice.ids, await api.history_ids())


async def test_stream_cut_mid_event_resumes_with_last_event_id(arrive: Arrive, api: Api,
                                                                proxy: TcpProxy) -> None:
    """A proxy drops the stream in the middle of an event. EventSource reconnects by itself with
    ``Last-Event-ID`` set to the last complete event; the server resumes right after it."""
    alice = await arrive("alice", url=proxy.url + "/")
    await expect(alice.status).to_have_attribute("data-state", "live")
    before = [await api.post(f"before {n}") for n in range(3)]
    await until(alice.ids, [m["id"] for m in before])
    await alice.mark_document()
    first_stream = proxy.requests_to("/a/message/stream")[0]

    # The proxy forwards the next event only up to its body, then drops every connection,
    # and holds the browser's reconnection until two more messages have been posted.
    proxy.cut_at(b"cut here")
    proxy.hold()
    during = [await api.post("cut here")]
    await expect(alice.status).to_have_attribute("data-state", "reconnecting")
    during += [await api.post(f"during {n}") for n in range(2)]
    proxy.release()

    history = await api.history_ids()
    assert history == [m["id"] for m in before + during]
    await until(alice.ids, history)
    await expect(alice.status).to_have_attribute("data-state", "live")
    assert await alice.same_document(), "the page was reloaded"

    streams = proxy.requests_to("/a/message/stream")
    assert len(streams) == 2, streams
    old, new = streams
    assert old is first_stream and "last-event-id" not in old.headers
    # The half-sent event did not count: the browser resumed after the last complete one.
    assert new.headers.get("last-event-id") == before[-1]["id"]
    cut_reply = bytes(proxy.replies[old.conn])
    assert b"id: " + during[0]["id"].encode() in cut_reply  # the cut came inside that event
    assert sse_events(cut_reply) == [("message", m["id"]) for m in before]
    # After the resume: exactly the missed events, none repeated, none skipped.
    assert sse_events(bytes(proxy.replies[new.conn])) == [("message", m["id"]) for m in during]


def client_keys(person: Person) -> list[str]:
    """The ``client_key`` of every message post this page made, in order."""
    keys = []
    for url, body in person.posts:
        if url.endswith("/a/message/new"):
            match = re.search(r'name="client_key"\r\n\r\n([^\r]*)\r\n', body)
            assert match, f"a post without a client_key: {body!r}"
            keys.append(match.group(1))
    return keys


async def test_failed_send_is_marked_and_retried_with_the_same_client_key(
        arrive: Arrive, api: Api, server: ChatServer) -> None:
    alice = await arrive("alice")
    await expect(alice.status).to_have_attribute("data-state", "live")
    body = alice.page.locator("#body")
    error = alice.page.locator("#send-error")
    await expect(error).to_be_hidden()

    await server.stop()
    await alice.say("are you there?")
    failed = alice.pending.filter(has_text="are you there?")
    await expect(failed.locator(".send-state")).to_have_text("Not sent")
    await expect(error).to_contain_text("Not sent: the server cannot be reached")
    # The message waits in the list with its Retry button; the box is free for the next one.
    await expect(body).to_have_value("")
    await expect(body).to_be_focused()
    await body.press_sequentially("typing on")
    await expect(body).to_have_value("typing on")

    await server.start()
    await expect(alice.status).to_have_attribute("data-state", "live")
    await expect(error).to_be_hidden()  # connected again: the error is history
    await expect(failed.locator(".send-state")).to_have_text("Not sent")  # not re-sent by itself
    await failed.get_by_role("button", name="Retry").click()
    await expect(alice.messages.filter(has_text="are you there?")).to_have_count(1)
    await expect(alice.pending).to_have_count(0)
    await expect(body).to_be_focused()
    assert [m["body"] for m in await api.history()] == ["are you there?"]

    await body.fill("a new message")
    await body.press("Enter")
    await alice.sees("a new message")
    # The first message was sent, retried (and, the restarted memory store having a new secret,
    # sent once more with a fresh token after its 403): one key for all of it, a new one after.
    *attempts, other = client_keys(alice)
    assert len(attempts) >= 2 and len(set(attempts)) == 1, \
        "a retry must reuse its message's client_key"
    assert other != attempts[0], "each composed message needs its own client_key"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", other)


async def test_send_refused_by_the_server_shows_its_reason(arrive: Arrive, api: Api,
                                                           server: ChatServer) -> None:
    alice = await arrive("alice")
    await expect(alice.status).to_have_attribute("data-state", "live")
    # A control character: 400 with a reason in words. (A 403 for the XSRF token is not shown:
    # the page gets a fresh token and sends again, tests/browser/test_xsrf_recovery.py.)
    await alice.say("hello\x07")
    error = alice.page.locator("#send-error")
    await expect(error).to_contain_text("Not sent: body must not contain control characters")
    refused = alice.pending.filter(has_text="hello")
    await expect(refused.locator(".send-state")).to_have_text("Not sent")
    await expect(alice.page.locator("#body")).to_be_editable()
    # A new message without it goes through (the refused one stays, marked, with its Retry).
    await alice.say("hello")
    await expect(alice.messages.filter(has_text="hello")).to_be_visible()
    await expect(error).to_be_hidden()
    assert [m["body"] for m in await api.history()] == ["hello"]


async def test_retry_after_a_cut_reply_is_stored_once(arrive: Arrive, api: Api) -> None:
    """The server stores the message but the reply never reaches the page (a dropped connection),
    so the page says "Not sent". The retry carries the same client_key: the server answers the
    message it stored first, and the page shows it once."""
    alice = await arrive("alice")
    await expect(alice.status).to_have_attribute("data-state", "live")
    cut: list[str] = []

    async def store_then_cut(route: Route) -> None:
        if cut:
            await route.continue_()
            return
        response = await route.fetch()  # stored, and streamed to every page
        cut.append(await response.text())
        await route.abort("connectionreset")

    await alice.page.route("**/a/message/new", store_then_cut)
    await alice.say("only once, please")
    failed = alice.pending.filter(has_text="only once, please")
    await expect(failed.locator(".send-state")).to_have_text("Not sent")
    await alice.sees("only once, please")  # the stored copy, delivered by the stream
    await failed.get_by_role("button", name="Retry").click()
    await expect(alice.pending).to_have_count(0)
    await expect(alice.page.locator("#inbox .message").filter(has_text="only once, please")).to_have_count(1)
    history = await api.history()
    assert [m["body"] for m in history] == ["only once, please"]
    first, retry = client_keys(alice)
    assert first == retry
