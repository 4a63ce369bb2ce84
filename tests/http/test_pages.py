"""GET / and /rooms/{room}: server-rendered history, the cookie, the no-JS form, the headers."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ..support import XSRF, Chat, one_store, with_settings


def cursor_of(page: str) -> str:
    match = re.search(r'data-cursor="([^"]*)"', page)
    assert match is not None
    return match.group(1)


async def test_index_is_room_main(chat: Chat) -> None:
    posted = await chat.post("hello")
    response = await chat.client.get("/")
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert 'data-room="main"' in page
    assert posted["html"] in page  # the very fragment the JSON carries
    assert cursor_of(page) == posted["id"]
    assert '<script defer src="/static/chat.js' in page


async def test_room_page_shows_only_its_room(chat: Chat) -> None:
    mine = await chat.post("in lobby", room="lobby")
    other = await chat.post("in main")
    page = await (await chat.client.get("/rooms/lobby")).text()
    assert mine["html"] in page and other["html"] not in page
    assert '<input type="hidden" name="room" value="lobby">' in page
    assert '<input type="hidden" name="next" value="/rooms/lobby">' in page


async def test_empty_room_has_a_valid_cursor(chat: Chat) -> None:
    page = await (await chat.client.get("/rooms/empty")).text()
    first = await chat.post("first", room="empty")
    # No reset: the empty room's cursor belongs to this history.
    assert await chat.poll(cursor=cursor_of(page), room="empty") == {"messages": [first]}


@pytest.mark.parametrize("settings", [with_settings(history=3)], ids=["history-3"])
async def test_page_renders_the_buffer_in_order(chat: Chat) -> None:
    posted = [await chat.post(f"m{i}") for i in range(5)]
    page = await (await chat.client.get("/")).text()
    positions = [page.index(m["html"]) for m in posted[2:]]
    assert positions == sorted(positions)
    assert posted[1]["html"] not in page
    assert cursor_of(page) == posted[-1]["id"]


@one_store
@pytest.mark.parametrize("path", ["/rooms/no%20pe", "/rooms/" + "r" * 65, "/rooms/a.b",
                                  "/rooms/", "/nothing"])
async def test_invalid_room_or_path_is_404(chat: Chat, path: str) -> None:
    response = await chat.client.get(path)
    assert response.status == 404
    assert "error" not in (await response.text())[:20]  # pages are not JSON


@one_store
async def test_sets_xsrf_cookie_when_absent_and_keeps_it(client: TestClient[Any, Any]) -> None:
    client.session.cookie_jar.clear()
    response = await client.get("/")
    cookie = response.cookies["_xsrf"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{48}", cookie.value)  # a nonce and its HMAC
    assert cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert not cookie["httponly"]  # the page's script reads it
    assert not cookie["secure"]  # plain HTTP here (tests/system/test_xsrf.py: behind TLS)
    page = await response.text()
    assert f'name="_xsrf" value="{cookie.value}"' in page
    again = await client.get("/")
    assert "_xsrf" not in again.cookies
    # The token works for posting.
    posted = await client.post("/a/message/new", data={"body": "x", "_xsrf": cookie.value})
    assert posted.status == 200


@one_store
async def test_existing_cookie_is_reused_in_the_form(chat: Chat) -> None:
    page = await (await chat.client.get("/")).text()
    assert f'name="_xsrf" value="{XSRF}"' in page


@one_store
@pytest.mark.parametrize("planted", ["test-token", XSRF[:-1] + "A", "x" * 48, "\xff"],
                         ids=["chosen", "bad-mac", "shape-only", "not-ascii"])
async def test_a_cookie_this_server_did_not_make_is_replaced(client: TestClient[Any, Any],
                                                             planted: str) -> None:
    client.session.cookie_jar.clear()
    response = await client.get("/", headers={"Cookie": f"_xsrf={planted}"})
    assert response.status == 200
    fresh = response.cookies["_xsrf"].value
    assert fresh != planted and f'name="_xsrf" value="{fresh}"' in await response.text()


@one_store
async def test_security_headers(chat: Chat) -> None:
    response = await chat.client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@one_store
async def test_static_assets_served(chat: Chat) -> None:
    for name, kind in [("chat.js", "javascript"), ("chat.css", "text/css")]:
        response = await chat.client.get(f"/static/{name}")
        assert response.status == 200 and kind in response.content_type


@one_store
async def test_no_js_post_redirects_back_and_shows_message(chat: Chat) -> None:
    response = await chat.client.post("/a/message/new", data={
        "_xsrf": XSRF, "room": "lobby", "body": "sent without script", "next": "/rooms/lobby"})
    assert response.status == 200 and response.url.path == "/rooms/lobby"  # followed the 302
    assert "sent without script" in await response.text()
