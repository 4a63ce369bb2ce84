"""POST /a/message/new: the JSON shape, the no-JavaScript redirect, and the bad-input table."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from aiohttp import FormData

from ..support import XSRF, Chat, one_store, position, with_settings


async def test_message_json_shape(chat: Chat) -> None:
    before = time.time()
    response = await chat.post_raw("  hello <b>world</b> & \"you\"  ", name=" ann ", room="lobby")
    assert response.status == 200
    assert response.content_type == "application/json"
    message = await response.json()
    assert set(message) == {"id", "room", "body", "name", "ts", "html"}
    assert message["room"] == "lobby"
    assert message["body"] == 'hello <b>world</b> & "you"'  # trimmed, stored as typed
    assert message["name"] == "ann"
    assert before <= message["ts"] <= time.time()
    assert message["html"].startswith(f'<div class="message" id="m{message["id"]}">')
    assert "hello &lt;b&gt;world&lt;/b&gt; &amp; &#34;you&#34;" in message["html"]
    assert "<b>" not in message["html"]


async def test_message_is_in_history_before_the_reply(chat: Chat) -> None:
    message = await chat.post("first")
    assert await chat.history() == [message]


async def test_ids_strictly_increase(chat: Chat) -> None:
    ids = [(await chat.post(str(i)))["id"] for i in range(20)]
    positions = [position(i) for i in ids]  # memory E-17, Redis E-1795770403829-0
    assert positions == sorted(positions) and len(set(ids)) == 20
    assert len({i.split("-")[0] for i in ids}) == 1


async def test_missing_name_is_null(chat: Chat) -> None:
    assert (await chat.post("x"))["name"] is None
    assert (await chat.post("x", name="   "))["name"] is None


@one_store
async def test_multipart_form_is_accepted(chat: Chat) -> None:
    form = FormData({"body": "via multipart", "_xsrf": XSRF})
    form.add_field("room", "mp")
    form._is_multipart = True
    response = await chat.client.post("/a/message/new", data=form)
    assert response.status == 200, await response.text()
    assert (await response.json())["body"] == "via multipart"


@one_store
async def test_xsrf_header_accepted_instead_of_field(chat: Chat) -> None:
    response = await chat.client.post("/a/message/new", data={"body": "hdr"},
                                      headers={"X-XSRFToken": XSRF})
    assert response.status == 200


@one_store
@pytest.mark.parametrize("next_path", ["/", "/rooms/main", "/rooms/a-b_c?x=1#m1", "/%2F%2Fevil"])
async def test_next_redirects_to_same_origin_path(chat: Chat, next_path: str) -> None:
    response = await chat.post_raw("no js", next=next_path)
    assert response.status == 302
    assert response.headers["Location"] == next_path
    assert [m["body"] for m in await chat.history()] == ["no js"]


# ---- the bad-input table ---------------------------------------------------------------------

LIMITS = with_settings(max_body=10, max_name=5, max_request=4096)
OK = {"body": "fine", "_xsrf": XSRF}

BAD: list[tuple[str, dict[str, Any], int, str]] = [
    # (id, request changes, status, words expected in the error)
    ("missing-body", {"data": {"_xsrf": XSRF}}, 400, "body is required"),
    ("blank-body", {"data": {**OK, "body": " \n\t "}}, 400, "body is required"),
    ("body-over-limit", {"data": {**OK, "body": "x" * 11}}, 400, "longer than 10"),
    ("name-over-limit", {"data": {**OK, "name": "abcdef"}}, 400, "longer than 5"),
    ("invalid-room", {"data": {**OK, "room": "no/such room"}}, 404, "invalid room"),
    ("room-too-long", {"data": {**OK, "room": "r" * 65}}, 404, "invalid room"),
    ("no-xsrf-field", {"data": {"body": "x"}}, 403, "missing _xsrf field"),
    ("wrong-xsrf", {"data": {**OK, "_xsrf": "nope"}}, 403, "does not match"),
    ("wrong-xsrf-header", {"data": {"body": "x"}, "headers": {"X-XSRFToken": "nope"}}, 403,
     "does not match"),
    ("no-xsrf-cookie", {"data": OK, "cookies": False}, 403, "missing _xsrf cookie"),
    ("next-protocol-relative", {"data": {**OK, "next": "//evil.example/"}}, 400, "next must be"),
    ("next-backslash", {"data": {**OK, "next": "/\\evil.example"}}, 400, "next must be"),
    ("next-http", {"data": {**OK, "next": "http://evil.example/"}}, 400, "next must be"),
    ("next-javascript", {"data": {**OK, "next": "javascript:alert(1)"}}, 400, "next must be"),
    ("next-tab", {"data": {**OK, "next": "/\t/evil.example"}}, 400, "next must be"),
    ("next-crlf", {"data": {**OK, "next": "/x\r\nSet-Cookie: a=b"}}, 400, "next must be"),
    ("next-relative", {"data": {**OK, "next": "rooms/main"}}, 400, "next must be"),
    ("request-too-large", {"data": {**OK, "pad": "x" * 5000}}, 413, "exceeded"),
    ("not-a-form", {"json": {"body": "x", "_xsrf": XSRF}}, 400, "expected a form"),
    ("bad-utf8", {"raw": b"body=%FF&_xsrf=" + XSRF.encode() + b"&x=\xff"}, 400, "UTF-8"),
    ("file-field", {"file": True}, 400, "must be text"),
]


@one_store
@pytest.mark.parametrize("settings", [LIMITS], ids=["limits"])
@pytest.mark.parametrize("case, change, status, words", BAD, ids=[b[0] for b in BAD])
async def test_bad_input(chat: Chat, case: str, change: dict[str, Any], status: int,
                         words: str) -> None:
    client = chat.client
    if change.get("cookies") is False:
        client.session.cookie_jar.clear()
    kwargs: dict[str, Any] = {"headers": change.get("headers", {})}
    if "data" in change:
        kwargs["data"] = change["data"]
    elif "json" in change:
        kwargs["json"] = change["json"]
    elif "raw" in change:
        kwargs["data"] = change["raw"]
        kwargs["headers"]["Content-Type"] = "application/x-www-form-urlencoded"
    elif change.get("file"):
        form = FormData(OK)
        form.add_field("body", b"binary", filename="a.bin")
        kwargs["data"] = form
    response = await client.post("/a/message/new", allow_redirects=False, **kwargs)
    assert response.status == status
    assert response.content_type == "application/json"
    error = (await response.json())["error"]
    assert words in error
    # Nothing was stored, and the server keeps serving.
    client.session.cookie_jar.update_cookies({"_xsrf": XSRF})
    assert await chat.history() == []
    assert await chat.history("no") == []
    assert (await chat.post("works"))["body"] == "works"


@one_store
@pytest.mark.parametrize("settings", [LIMITS], ids=["limits"])
async def test_limits_at_their_edges(chat: Chat) -> None:
    assert (await chat.post("x" * 10, name="abcde", room="r" * 64))["body"] == "x" * 10
    assert (await chat.post("  " + "y" * 10 + "  "))["body"] == "y" * 10  # counted after trimming
    # A request body of exactly max_request bytes is read; one byte more is 413.
    head = f"_xsrf={XSRF}&body=edge&pad="
    exact = (head + "p" * (4096 - len(head))).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    assert (await chat.client.post("/a/message/new", data=exact, headers=headers)).status == 200
    over = await chat.client.post("/a/message/new", data=exact + b"p", headers=headers)
    assert over.status == 413


@one_store
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_wrong_method_is_405_json(chat: Chat, method: str) -> None:
    response = await chat.client.request(method, "/a/message/new")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    assert "not allowed" in (await response.json())["error"]


@one_store
async def test_unknown_api_route_is_404_json(chat: Chat) -> None:
    response = await chat.client.post("/a/nothing", data=OK)
    assert response.status == 404
    assert (await response.json()) == {"error": "no such endpoint: /a/nothing"}


@one_store
async def test_html_body_is_escaped_on_the_page(chat: Chat) -> None:
    await chat.post("<img src=x onerror=alert(1)>")
    page = await (await chat.client.get("/")).text()
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


async def test_unicode_round_trips(chat: Chat) -> None:
    body = "héllo 🌍 \u2028 ‮ 中文 \U0001F600"
    posted = await chat.post(body, name="名前")
    assert posted["body"] == body.strip() and posted["name"] == "名前"
    assert json.loads(json.dumps(posted)) == (await chat.history())[0]
