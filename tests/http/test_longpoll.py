"""POST /a/message/updates: the resume matrix, waiting, timeout, disconnects, the classic client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from chat.web.keys import feed_key

from ..support import XSRF, Chat, future_cursor, one_store, with_settings


async def _three(chat: Chat) -> list[dict[str, Any]]:
    return [await chat.post(f"m{i}") for i in range(3)]


async def test_newer_messages_at_once(chat: Chat) -> None:
    posted = await _three(chat)
    assert await chat.poll(cursor=posted[0]["id"]) == {"messages": posted[1:]}


async def test_exact_body_bytes_for_one_message(chat: Chat) -> None:
    posted = await _three(chat)
    response = await chat.client.post("/a/message/updates",
                                      data={"_xsrf": XSRF, "cursor": posted[1]["id"]})
    assert response.content_type == "application/json"
    one = json.dumps(posted[2], separators=(",", ":")).encode()
    assert await response.read() == b'{"messages":[' + one + b"]}"


async def test_no_cursor_returns_buffer(chat: Chat) -> None:
    posted = await _three(chat)
    assert await chat.poll() == {"messages": posted}


async def test_cursor_at_newest_waits_for_next_message(chat: Chat) -> None:
    posted = await _three(chat)
    waiting = asyncio.create_task(chat.poll(cursor=posted[-1]["id"]))
    await chat.until_metric("chat_poll_waiters", 1)
    assert not waiting.done()
    nxt = await chat.post("next")
    assert await waiting == {"messages": [nxt]}


async def test_empty_room_without_cursor_waits(chat: Chat) -> None:
    waiting = asyncio.create_task(chat.poll(room="quiet"))
    await chat.until_metric("chat_poll_waiters", 1)
    first = await chat.post("first", room="quiet")
    assert await waiting == {"messages": [first]}


@pytest.mark.parametrize("settings", [with_settings(poll_timeout=0.2)], ids=["timeout-0.2s"])
async def test_timeout_answers_empty_object(chat: Chat) -> None:
    posted = await _three(chat)
    response = await chat.client.post("/a/message/updates",
                                      data={"_xsrf": XSRF, "cursor": posted[-1]["id"]})
    assert await response.read() == b"{}"
    assert await chat.metric("chat_poll_waiters") == 0


@pytest.mark.parametrize("settings", [with_settings(history=3)], ids=["history-3"])
@pytest.mark.parametrize("store_url", ["memory"])  # RAM is all the memory store keeps
async def test_evicted_cursor_resets_with_buffer(chat: Chat) -> None:
    posted = [await chat.post(f"m{i}") for i in range(6)]
    assert await chat.poll(cursor=posted[1]["id"]) == {"messages": posted[3:], "reset": True}
    # The cursor just before the oldest held message is still good.
    assert await chat.poll(cursor=posted[2]["id"]) == {"messages": posted[3:]}


@pytest.mark.parametrize("cursor", ["garbage!", "zzzzzz-2", "FUTURE", "a\x00b", "x\r\ny"],
                         ids=["malformed", "other-epoch", "future", "nul", "crlf"])
async def test_untrusted_cursor_resets(chat: Chat, cursor: str) -> None:
    posted = await _three(chat)
    if cursor == "FUTURE":
        cursor = future_cursor(posted[-1]["id"])
    assert await chat.poll(cursor=cursor) == {"messages": posted, "reset": True}


async def test_untrusted_cursor_on_empty_room_waits_then_resets(chat: Chat) -> None:
    waiting = asyncio.create_task(chat.poll(cursor="zzzzzz-7", room="fresh"))
    await chat.until_metric("chat_poll_waiters", 1)
    first = await chat.post("first", room="fresh")
    assert await waiting == {"messages": [first], "reset": True}


async def test_other_rooms_do_not_wake_a_poll(chat: Chat) -> None:
    posted = await _three(chat)
    waiting = asyncio.create_task(chat.poll(cursor=posted[-1]["id"]))
    await chat.until_metric("chat_poll_waiters", 1)
    await chat.post("elsewhere", room="other")
    await asyncio.sleep(0.1)
    assert not waiting.done()
    mine = await chat.post("here")
    assert await waiting == {"messages": [mine]}


async def test_disconnect_leaves_no_waiter(chat: Chat) -> None:
    posted = await _three(chat)
    before = await chat.metric("chat_poll_waiters")
    waiting = asyncio.create_task(chat.poll(cursor=posted[-1]["id"]))
    await chat.until_metric("chat_poll_waiters", before + 1)
    waiting.cancel()  # closes the client's connection
    await chat.until_metric("chat_poll_waiters", before, timeout=1.0)
    hub = chat.client.app[feed_key].hub
    assert not hub.watching("main")  # no waiter set left behind either


@one_store
async def test_invalid_room_is_404(chat: Chat) -> None:
    response = await chat.client.post("/a/message/updates", data={"_xsrf": XSRF, "room": "a b"})
    assert response.status == 404
    assert "invalid room" in (await response.json())["error"]


@one_store
async def test_missing_xsrf_is_403(chat: Chat) -> None:
    response = await chat.client.post("/a/message/updates", data={"cursor": ""})
    assert response.status == 403


class TornadoClient:
    """What Tornado's demos/chat/static/chat.js does, step by step, with the same form fields."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        self.cursor: str | None = None
        self.inbox: list[str] = []  # DOM ids, as $("#inbox") would hold them
        self.errors = 0

    async def new_message(self, body: str) -> dict[str, Any]:
        # $.postJSON("/a/message/new", {body, _xsrf}) with dataType "text", then eval()
        response = await self.chat.client.post(
            "/a/message/new", data={"body": body, "_xsrf": XSRF},
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        result: dict[str, Any] = json.loads(await response.text())
        return result

    async def poll_once(self) -> None:
        args = {"_xsrf": XSRF}
        if self.cursor:
            args["cursor"] = self.cursor
        response = await self.chat.client.post("/a/message/updates", data=args)
        if response.status != 200:
            self.errors += 1
            return
        reply = json.loads(await response.text())
        if not reply.get("messages"):  # newMessages(): `if (!response.messages) return;`
            return
        messages = reply["messages"]
        self.cursor = messages[-1]["id"]
        for message in messages:  # showMessage(): skip ids already in the DOM
            if "m" + message["id"] not in self.inbox:
                assert message["html"].startswith(f'<div class="message" id="m{message["id"]}"')
                self.inbox.append("m" + message["id"])


@pytest.mark.parametrize("settings", [with_settings(poll_timeout=0.3)], ids=["timeout-0.3s"])
async def test_tornado_chatdemo_client_works_unchanged(chat: Chat) -> None:
    alice, bob = TornadoClient(chat), TornadoClient(chat)
    sent = [await alice.new_message("hello"), await bob.new_message("hi alice")]
    await alice.poll_once()
    assert alice.inbox == ["m" + m["id"] for m in sent]
    await alice.poll_once()  # times out: the reply is {} and the client simply polls again
    assert alice.errors == 0 and alice.inbox == ["m" + m["id"] for m in sent]
    waiting = asyncio.create_task(alice.poll_once())
    await chat.until_metric("chat_poll_waiters", 1)
    third = await bob.new_message("third")
    await waiting
    assert alice.inbox == ["m" + m["id"] for m in [*sent, third]]
