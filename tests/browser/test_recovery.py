"""Losing the connection and getting it back: a server restart, the browser offline, a proxy
dropping the stream mid-event, and a send that fails."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import expect

from ..support import until
from .proxy import TcpProxy, sse_events
from .server import Api, ChatServer
from .support import Arrive

TRANSPORTS = ["eventsource", "polling"]
STATE = {"eventsource": "live", "polling": "polling"}


async def test_server_restart_resets_and_chatting_goes_on(arrive: Arrive, api: Api,
                                                          server: ChatServer) -> None:
    """In-memory store: the restarted server has a new epoch and no history. Both pages notice,
    replace their lists with the new history and keep chatting, without a reload."""
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

    # The stream's reconnect carries an id of the old epoch: the server answers with a reset,
    # and the page empties its list at once, before anyone speaks.
    await expect(alice.status).to_have_attribute("data-state", "live")
    await expect(alice.messages).to_have_count(0)
    await alice.say("anyone here after the restart?")
    await bob.sees("anyone here after the restart?")
    await bob.say("yes, still here")
    await alice.sees("yes, still here")
    new = await api.history_ids()
    assert len(new) == 2 and not set(new) & set(old)
    for person in (alice, bob):
        await until(person.ids, new)
        assert await person.same_document(), f"{person.label}'s page was reloaded"
    await expect(bob.status).to_have_attribute("data-state", "polling")


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


async def test_failed_send_keeps_the_message_for_a_retry(arrive: Arrive, api: Api,
                                                         server: ChatServer) -> None:
    alice = await arrive("alice")
    await expect(alice.status).to_have_attribute("data-state", "live")
    body = alice.page.locator("#body")
    error = alice.page.locator("#send-error")
    await expect(error).to_be_hidden()

    await server.stop()
    await alice.say("are you there?")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("Not sent")
    await expect(error).to_contain_text("cannot be reached")
    # The text stays, and the box stays usable: focused, editable, and one can keep typing.
    await expect(body).to_have_value("are you there?")
    await expect(body).to_be_editable()
    await expect(body).to_be_focused()
    await body.press_sequentially(" hello?")
    await expect(body).to_have_value("are you there? hello?")

    await server.start()
    await expect(alice.status).to_have_attribute("data-state", "live")
    await body.press("Enter")  # the retry
    await expect(alice.messages.filter(has_text="are you there? hello?")).to_be_visible()
    await expect(error).to_be_hidden()
    await expect(body).to_have_value("")
    assert [m["body"] for m in await api.history()] == ["are you there? hello?"]


async def test_send_refused_by_the_server_shows_its_reason(arrive: Arrive, api: Api) -> None:
    alice = await arrive("alice")
    await expect(alice.status).to_have_attribute("data-state", "live")
    # A control character: 400 with a reason in words. (A 403 for the XSRF token is not shown:
    # the page gets a fresh token and sends again, tests/browser/test_xsrf_recovery.py.)
    await alice.say("hello\x07")
    error = alice.page.locator("#send-error")
    await expect(error).to_contain_text("Not sent: body must not contain control characters")
    await expect(alice.page.locator("#body")).to_have_value("hello\x07")
    await expect(alice.page.locator("#body")).to_be_editable()
    # Without it, the retry goes through.
    await alice.say("hello")
    await expect(alice.messages.filter(has_text="hello")).to_be_visible()
    assert [m["body"] for m in await api.history()] == ["hello"]
