"""POST /api/rooms/{room}/messages: keys, the JSON body, every refusal storing nothing, and a key
that never reaches the log."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chat.settings import Settings
from chat.web.api import match_key

from ..support import XSRF, Chat, ServerProcess, one_store, run_chat, with_settings

KEYS = ("key-one-aaaaaaaaaaaa", "key-two-bbbbbbbbbbbb")
API = with_settings(api_keys=KEYS, max_body=10, max_name=5, max_request=4096)
PATH = "/api/rooms/lobby/messages"


def bearer(key: str = KEYS[0]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def api_post(chat: Chat, payload: Any = None, *, key: str | None = KEYS[0],
                   path: str = PATH, headers: dict[str, str] | None = None) -> Any:
    all_headers = {**(bearer(key) if key is not None else {}), **(headers or {})}
    return await chat.client.post(path, json=payload if payload is not None else {"body": "hi"},
                                  headers=all_headers)


async def stored(chat: Chat) -> list[dict[str, Any]]:
    return await chat.history("lobby") + await chat.history("main")


# ---- accepted --------------------------------------------------------------------------------

@pytest.mark.parametrize("settings", [API], ids=["keys"])
@pytest.mark.parametrize("key", KEYS, ids=["first-key", "second-key"])
async def test_201_with_the_message_object_of_the_form(chat: Chat, key: str) -> None:
    chat.client.session.cookie_jar.clear()  # no cookie, no _xsrf: a program has neither
    response = await api_post(chat, {"body": "  hello <b>  ", "name": " bot "}, key=key)
    assert response.status == 201, await response.text()
    assert response.content_type == "application/json"
    message = await response.json()
    chat.client.session.cookie_jar.update_cookies({"_xsrf": XSRF})
    form = await chat.post("hello <b>", name="bot", room="lobby")
    assert set(message) == set(form) == {"id", "room", "body", "name", "ts", "html"}
    assert (message["room"], message["body"], message["name"]) == ("lobby", "hello <b>", "bot")
    assert message["html"] == form["html"].replace(form["id"], message["id"]).replace(
        _time(form["html"]), _time(message["html"]))
    assert await chat.history("lobby") == [message, form]


def _time(html: str) -> str:
    return html[html.index("<time"):]


@one_store
@pytest.mark.parametrize("settings", [API], ids=["keys"])
async def test_name_may_be_left_out_or_null(chat: Chat) -> None:
    for payload in ({"body": "a"}, {"body": "b", "name": None}, {"body": "c", "name": "  "}):
        response = await api_post(chat, payload)
        assert response.status == 201, await response.text()
        assert (await response.json())["name"] is None


@one_store
@pytest.mark.parametrize("settings", [API], ids=["keys"])
@pytest.mark.parametrize("value", ["a", "A-z_09", "k" * 64])
async def test_a_valid_idempotency_key_is_accepted(chat: Chat, value: str) -> None:
    response = await api_post(chat, headers={"Idempotency-Key": value})
    assert response.status == 201, await response.text()
    assert [m["body"] for m in await chat.history("lobby")] == ["hi"]


# ---- refused, storing nothing -----------------------------------------------------------------

BAD: list[tuple[str, dict[str, Any], int, str]] = [
    # (id, request, status, words in the error)
    ("no-authorization", {"key": None}, 401, "missing API key"),
    ("wrong-key", {"key": "key-three-cccccccccc"}, 401, "invalid API key"),
    ("prefix-of-a-key", {"key": KEYS[0][:-1]}, 401, "invalid API key"),
    ("key-and-more", {"key": KEYS[0] + "x"}, 401, "invalid API key"),
    ("both-keys", {"key": KEYS[0] + "," + KEYS[1]}, 401, "invalid API key"),
    ("basic-scheme", {"key": None, "headers": {"Authorization": "Basic a2V5LW9uZTp4"}}, 401,
     "missing API key"),
    ("bearer-without-key", {"key": None, "headers": {"Authorization": "Bearer "}}, 401,
     "missing API key"),
    ("xsrf-instead-of-key", {"key": None, "headers": {"X-XSRFToken": XSRF}}, 401, "missing API key"),
    ("text-plain", {"raw": b'{"body": "x"}', "type": "text/plain"}, 415, "application/json"),
    ("form", {"raw": b"body=x", "type": "application/x-www-form-urlencoded"}, 415,
     "application/json"),
    ("no-content-type", {"raw": b'{"body": "x"}', "type": None}, 415, "application/json"),
    ("latin-1-json", {"raw": b'{"body": "x"}', "type": "application/json; charset=latin-1"}, 415,
     "UTF-8"),
    ("not-json", {"raw": b"body=x"}, 400, "not valid JSON"),
    ("trailing-junk", {"raw": b'{"body": "x"} {}'}, 400, "not valid JSON"),
    ("empty", {"raw": b""}, 400, "not valid JSON"),
    ("array", {"json": [{"body": "x"}]}, 400, "expected a JSON object"),
    ("string", {"json": "x"}, 400, "expected a JSON object"),
    ("body-missing", {"json": {"name": "x"}}, 400, "body is required and must be a string"),
    ("body-null", {"json": {"body": None}}, 400, "body is required and must be a string"),
    ("body-number", {"json": {"body": 5}}, 400, "body is required and must be a string"),
    ("body-list", {"json": {"body": ["x"]}}, 400, "body is required and must be a string"),
    ("name-number", {"json": {"body": "x", "name": 1}}, 400, "name must be a string or null"),
    ("name-object", {"json": {"body": "x", "name": {}}}, 400, "name must be a string or null"),
    ("extra-field", {"json": {"body": "x", "room": "main"}}, 400, "unknown field 'room'"),
    ("xsrf-field", {"json": {"body": "x", "_xsrf": XSRF}}, 400, "unknown field '_xsrf'"),
    ("duplicate-field", {"raw": b'{"body": "x", "body": "y"}'}, 400, "given twice"),
    ("nan", {"raw": b'{"body": "x", "name": NaN}'}, 400, "NaN is not JSON"),
    ("deeply-nested", {"raw": b"[" * 2000 + b"]" * 2000}, 400, "nested too deeply"),
    ("bad-utf8", {"raw": b'{"body": "\xff"}'}, 400, "not valid UTF-8"),
    ("lone-surrogate", {"raw": b'{"body": "a\\ud800"}'}, 400, "unpaired surrogate"),
    ("blank-body", {"json": {"body": " \n\t "}}, 400, "body is required"),
    ("body-over-limit", {"json": {"body": "x" * 11}}, 400, "longer than 10"),
    ("body-control", {"json": {"body": "a\x1bb"}}, 400, "control characters"),
    ("name-over-limit", {"json": {"body": "x", "name": "abcdef"}}, 400, "longer than 5"),
    ("name-newline", {"json": {"body": "x", "name": "a\nb"}}, 400, "one line"),
    ("over-max-request", {"json": {"body": "x", "name": "y" * 5000}}, 413, "exceeded"),
    ("over-max-request-chunked", {"chunked": b'{"body": "' + b"x" * 5000 + b'"}'}, 413,
     "exceeded"),
    ("invalid-room", {"path": "/api/rooms/no%20such/messages"}, 404, "invalid room"),
    ("room-too-long", {"path": f"/api/rooms/{'r' * 65}/messages"}, 404, "invalid room"),
    ("idempotency-key-space", {"headers": {"Idempotency-Key": "a b"}}, 400, "Idempotency-Key"),
    ("idempotency-key-65", {"headers": {"Idempotency-Key": "k" * 65}}, 400, "Idempotency-Key"),
    ("idempotency-key-empty", {"headers": {"Idempotency-Key": ""}}, 400, "Idempotency-Key"),
    ("idempotency-key-dot", {"headers": {"Idempotency-Key": "a.b"}}, 400, "Idempotency-Key"),
]


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 1000):
        yield data[i:i + 1000]


@one_store
@pytest.mark.parametrize("settings", [API], ids=["keys"])
@pytest.mark.parametrize("case, change, status, words", BAD, ids=[b[0] for b in BAD])
async def test_refused_and_nothing_stored(chat: Chat, case: str, change: dict[str, Any],
                                          status: int, words: str) -> None:
    key = change.get("key", KEYS[0])
    headers = {**(bearer(key) if key is not None else {}), **change.get("headers", {})}
    kwargs: dict[str, Any] = {}
    if "json" in change:
        kwargs["json"] = change["json"]
    elif "raw" in change or "chunked" in change:
        kwargs["data"] = change["raw"] if "raw" in change else _chunks(change["chunked"])
        content_type = change.get("type", "application/json")
        if content_type is None:
            kwargs["skip_auto_headers"] = ["Content-Type"]
        else:
            headers["Content-Type"] = content_type
    else:
        kwargs["json"] = {"body": "fine"}
    response = await chat.client.post(change.get("path", PATH), headers=headers, **kwargs)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    error = (await response.json())["error"]
    assert words in error
    assert all(k not in error for k in KEYS)  # a key is never echoed
    if status == 401:
        assert response.headers["WWW-Authenticate"] in ("Bearer", 'Bearer error="invalid_token"')
    assert await stored(chat) == []
    # The server keeps serving.
    assert (await api_post(chat, {"body": "works"})).status == 201


@one_store
async def test_no_keys_configured_means_every_request_is_401(chat: Chat) -> None:
    for key in (None, "anything", ""):
        response = await api_post(chat, key=key)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "no API keys" in (await response.json())["error"]
    assert await stored(chat) == []


@one_store
@pytest.mark.parametrize("settings", [API], ids=["keys"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_other_methods_and_routes_are_json_errors(chat: Chat, method: str) -> None:
    response = await chat.client.request(method, PATH, headers=bearer())
    assert response.status == 405 and response.headers["Allow"] == "POST"
    assert "not allowed" in (await response.json())["error"]
    response = await chat.client.request(method, "/api/nothing", headers=bearer())
    assert response.status == 404
    assert (await response.json()) == {"error": "no such endpoint: /api/nothing"}


@one_store
@pytest.mark.parametrize("settings", [API], ids=["keys"])
@pytest.mark.parametrize("path", ["/api/../a/message/new", "/api/%2e%2e/a/message/new",
                                  "/api/rooms/..%2f..%2fa%2fmessage/new"])
async def test_the_xsrf_exemption_covers_only_api_routes(chat: Chat, path: str) -> None:
    """A form post spelled to look like /api/ gets no exemption: it never reaches the form
    handler, and the form handler itself still demands the token."""
    chat.client.session.cookie_jar.clear()
    response = await chat.client.post(path, data={"body": "forged"}, headers=bearer())
    assert response.status in (403, 404), await response.text()
    response = await chat.client.post("/a/message/new", data={"body": "forged"}, headers=bearer())
    assert response.status == 403
    assert await stored(chat) == []


# ---- rate limit per key -----------------------------------------------------------------------

LIMITED = with_settings(api_keys=KEYS, api_post_rate=0.5, api_post_burst=2, post_rate=0.5,
                        post_burst=1)


@one_store
@pytest.mark.fake_clock
@pytest.mark.parametrize("settings", [LIMITED], ids=["burst-2"])
async def test_rate_limit_counts_per_key(chat: Chat, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(2):
        assert (await api_post(chat, {"body": f"burst {i}"})).status == 201
    with caplog.at_level(logging.WARNING, logger="chat.limits"):
        response = await api_post(chat, {"body": "the third"})
    assert response.status == 429
    wait = int(response.headers["Retry-After"])
    assert wait == 2  # 0.5 posts/s, and no time passed (a fake clock): the next token is 2 s away
    assert (await response.json()) == {"error": f"too many messages for this API key; wait {wait} s"}
    assert "event=refused reason=api_posts client=api-key-1" in caplog.text
    assert KEYS[0] not in caplog.text
    # The other key has its own bucket, and so has a browser (same address, another limit).
    assert (await api_post(chat, {"body": "other key"}, key=KEYS[1])).status == 201
    assert (await chat.post_raw("from the page", room="lobby")).status == 200
    assert [m["body"] for m in await chat.history("lobby")] == [
        "burst 0", "burst 1", "other key", "from the page"]
    text = await (await chat.client.get("/metrics")).text()
    assert 'chat_rate_limited_total{reason="api_posts"} 1.0' in text


# ---- keys in code, settings and logs ----------------------------------------------------------

def test_match_key_finds_each_key_and_nothing_else() -> None:
    keys = ("alpha", "beta", "gamma-long-key")
    assert [match_key(k, keys) for k in keys] == [0, 1, 2]
    for wrong in ("", "alph", "alphaa", "ALPHA", "beta ", "gamma-long-ke", "\udcff"):
        assert match_key(wrong, keys) is None
    assert match_key("x", ()) is None


def test_settings_repr_shows_no_key() -> None:
    assert KEYS[0] not in repr(Settings(api_keys=KEYS))
    assert KEYS[0] not in str(API)


def _request(url: str, key: str | None, body: bytes = b'{"body": "from curl"}') -> int:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url + "/api/rooms/main/messages", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_key_never_appears_in_the_log(how: str) -> None:
    key, wrong = "s3cret-Key_0123456789abcdef", "wr0ng-Key_0123456789abcdef"
    args = ["--access-log", "1", "--log-level", "DEBUG", "--api-post-burst", "5",
            "--api-post-rate", "0.01"]
    env = {}
    if how == "option":
        args += ["--api-keys", f"first-key-xyz,{key}"]
    else:
        env["CHAT_API_KEYS"] = f"first-key-xyz,{key}"
    with ServerProcess(*args, env=env) as server:
        statuses = [_request(server.url, key) for _ in range(3)]
        statuses += [_request(server.url, key, b"{not json"), _request(server.url, wrong),
                     _request(server.url, None), _request(server.url, key),
                     _request(server.url, key)]  # the 6th with the key is over the burst
        assert server.stop() == 0
        log = server.output()
    assert statuses == [201, 201, 201, 400, 401, 401, 201, 429], log
    assert "POST /api/rooms/main/messages" in log  # the access log is on
    assert "reason=api_posts client=api-key-2" in log
    assert key not in log and wrong not in log and "first-key-xyz" not in log, log


def test_a_bad_key_setting_is_one_line_that_does_not_echo_it() -> None:
    for args, env in ((["--api-keys", "good-key,bad key!"], {}),
                      ([], {"CHAT_API_KEYS": "good-key,bad key!"})):
        result = run_chat(*args, env=env)
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and "API key 2 of 2" in lines[0], result.stderr
        assert "bad key" not in result.stderr and "good-key" not in result.stderr


def test_help_lists_the_api_options() -> None:
    result = run_chat("--help")
    for option in ("--api-keys", "--api-post-rate", "--api-post-burst", "CHAT_API_KEYS"):
        assert option in result.stdout
    assert json.dumps(list(KEYS)) not in result.stdout
