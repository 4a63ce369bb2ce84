"""Choosing the transport: when the page falls back to long-polling, that it remembers it for the
tab, that both transports share one cursor, and that a message delivered twice is shown once."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from playwright.async_api import Route, expect

from ..support import until
from .proxy import TcpProxy
from .server import Api, ChatServer
from .support import Arrive


async def refuse(route: Route) -> None:
    """What a proxy that does not pass event streams answers; EventSource then gives up for good."""
    await route.fulfill(status=502, content_type="text/html", body="<h1>502 Bad Gateway</h1>")


async def test_refused_stream_falls_back_and_the_tab_remembers(arrive: Arrive, api: Api,
                                                               server: ChatServer) -> None:
    alice = await arrive("alice", url="")
    await alice.page.route("**/a/message/stream*", refuse)
    await alice.page.goto(server.url + "/")
    await expect(alice.status).to_have_attribute("data-state", "polling")
    assert "info: chat: long-polling, because the stream was refused" in alice.console
    await alice.say("over polling")
    await expect(alice.messages.filter(has_text="over polling")).to_be_visible()

    # The stream would work now, but this tab keeps polling (sessionStorage) ...
    await alice.page.unroute("**/a/message/stream*")
    alice.requests.clear()
    await alice.page.reload()
    await expect(alice.status).to_have_attribute("data-state", "polling")
    await expect(alice.messages).to_have_count(1)
    assert not alice.requested("/a/message/stream")
    # ... while a new tab of the same browser tries EventSource first again.
    tab = await alice.context.new_page()
    await tab.goto(server.url + "/")
    await expect(tab.locator("#status")).to_have_attribute("data-state", "live")


async def test_no_stream_within_3_seconds_falls_back(arrive: Arrive, api: Api,
                                                     server: ChatServer) -> None:
    """A proxy that buffers the response: the stream request never completes its headers."""
    alice = await arrive("alice", url="")
    pending: list[Route] = []

    async def never_answer(route: Route) -> None:
        pending.append(route)

    await alice.page.route("**/a/message/stream*", never_answer)
    start = time.monotonic()
    await alice.page.goto(server.url + "/")
    await expect(alice.status).to_have_attribute("data-state", "polling", timeout=8000)
    waited = time.monotonic() - start
    assert 2.5 < waited, f"fell back after {waited:.1f}s, before the stream had ~3 s to open"
    assert await alice.states() == ["connecting", "polling"]
    assert pending, "the stream request was never made"
    await api.post("reaches the poller")
    await expect(alice.messages.filter(has_text="reaches the poller")).to_be_visible()
    await alice.page.unroute("**/a/message/stream*")


async def test_stream_failing_for_good_mid_chat_continues_over_polling(
        arrive: Arrive, api: Api, proxy: TcpProxy) -> None:
    """The stream worked, then a proxy starts refusing it: the page ends up polling from the
    stream's cursor, so nothing is lost or shown twice across the switch."""
    alice = await arrive("alice", url=proxy.url + "/")
    await expect(alice.status).to_have_attribute("data-state", "live")
    streamed = [await api.post(f"streamed {n}") for n in range(3)]
    await until(alice.ids, [m["id"] for m in streamed])
    polls: list[str] = []
    alice.page.on("request", lambda r: polls.append(r.post_data or "")
                  if r.url.endswith("/a/message/updates") else None)

    await alice.page.route("**/a/message/stream*", refuse)
    proxy.cut()
    for n in range(3):
        await api.post(f"after the cut {n}")
    await expect(alice.status).to_have_attribute("data-state", "polling", timeout=10000)
    await alice.say("sent while polling")
    await alice.sees("sent while polling")
    await until(alice.ids, await api.history_ids())
    assert len(await alice.ids()) == 7
    # The first poll carried the id of the last streamed message: one cursor for both.
    assert f'name="cursor"\r\n\r\n{streamed[-1]["id"]}\r\n' in polls[0]


@pytest.mark.parametrize("transport", ["eventsource", "polling"])
async def test_a_message_delivered_twice_is_shown_once(arrive: Arrive, api: Api, server: ChatServer,
                                                       transport: str) -> None:
    """An intermediary rewinds the first request to the start of the history: everything the page
    already rendered arrives again, and the page drops each repeat by its DOM id."""
    for n in range(4):
        await api.post(f"message {n}")
    alice = await arrive("alice", url="", polling=transport == "polling")
    rewound: list[str] = []

    async def rewind(route: Route) -> None:
        request = route.request
        if rewound:
            await route.continue_()
        elif transport == "eventsource":
            rewound.append(request.url)
            await route.continue_(url=re.sub(r"last_event_id=[^&]*", "last_event_id=earliest",
                                             request.url))
        else:
            body = request.post_data or ""
            rewound.append(body)
            await route.continue_(post_data=re.sub(r'(name="cursor"\r\n\r\n)[^\r]*', r"\1", body))

    endpoint = "**/a/message/stream*" if transport == "eventsource" else "**/a/message/updates"
    await alice.page.route(endpoint, rewind)
    await alice.page.goto(server.url + "/")
    await expect(alice.status).to_have_attribute("data-state", "live" if transport == "eventsource"
                                                 else "polling")
    history = await api.history_ids()
    assert await alice.ids() == history
    await api.post("new after the repeat")
    await until(alice.ids, await api.history_ids())
    assert rewound


async def test_a_slow_reconnect_does_not_give_up_on_the_stream(arrive: Arrive, api: Api,
                                                               server: ChatServer) -> None:
    """The ~3 s open timeout is for proxies that never let a stream open. Once one has opened on
    the page, a reconnect that takes longer (the network is back, the server not yet) keeps
    trying EventSource instead of switching the tab to polling for good."""
    alice = await arrive("alice")
    await expect(alice.status).to_have_attribute("data-state", "live")
    await alice.context.set_offline(True)
    await expect(alice.status).to_have_attribute("data-state", "offline")
    await server.stop()
    await alice.context.set_offline(False)  # a new EventSource, refused until the server is back
    await asyncio.sleep(4)
    assert await alice.status.get_attribute("data-state") in ("connecting", "reconnecting")
    assert not alice.requested("/a/message/updates"), "fell back to polling"
    await server.start()
    await expect(alice.status).to_have_attribute("data-state", "live")
    await alice.say("still streaming")
    await alice.sees("still streaming")
    assert not alice.requested("/a/message/updates")
    assert await alice.page.evaluate("sessionStorage.getItem('chat.transport')") is None
