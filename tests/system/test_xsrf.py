"""XSRF that the server owns, against a real ``python -m chat``.

The token is a random value and its HMAC under the server secret; whatever the client invents
is refused (403, never a 500, whatever its bytes); a cross-site POST is refused even with a
valid token planted as cookie; behind TLS the cookie is Secure; the secret is ``--secret``, or
the store's (RAM for memory: a restart makes a new one; Redis: one key for every process).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator

import pytest

from ..support import XSRF, ServerProcess, form_request, raw_exchange
from ..support.servers import RedisServer

STORE_SECRET = {"CHAT_SECRET": ""}  # ServerProcess sets CHAT_SECRET; "" leaves it to the store


def page(server: ServerProcess, *headers: str) -> tuple[int, str]:
    """GET / (with ``headers``); the status and the Set-Cookie header ("" if none)."""
    extra = "".join(f"{h}\r\n" for h in headers)
    reply = raw_exchange(server.port, f"GET / HTTP/1.1\r\nHost: x\r\n{extra}Connection: close"
                         f"\r\n\r\n".encode("utf-8", "surrogateescape"))
    return reply.status, reply.headers.get("set-cookie", "")


def token_of(set_cookie: str) -> str:
    assert set_cookie.startswith("_xsrf="), set_cookie
    return set_cookie.split(";")[0].split("=", 1)[1]


def post(server: ServerProcess, token: str, *headers: str, cookie: str | None = None,
         body: str = "hi") -> tuple[int, str]:
    extra = "".join(f"{h}\r\n" for h in headers) + "Connection: close\r\n"
    form = urllib.parse.urlencode({"_xsrf": token, "body": body}, errors="surrogateescape").encode()
    request = form_request("/a/message/new", form, token=token if cookie is None else cookie,
                           extra=extra.encode("utf-8", "surrogateescape"))
    reply = raw_exchange(server.port, request)
    return reply.status, reply.body.decode()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess("--post-rate", "0", env=STORE_SECRET) as process:
        yield process


@pytest.mark.parametrize("cookie", ["\xff", "\xff\xfe", "_\xff"], ids=["ff", "fffe", "ascii-ff"])
def test_a_cookie_that_is_not_text_is_403_and_the_page_replaces_it(server: ServerProcess,
                                                                   cookie: str) -> None:
    raw = cookie.encode("latin-1").decode("utf-8", "surrogateescape")  # the bytes as sent
    status, text = post(server, raw, cookie=raw)
    assert status == 403, text
    assert "not one this server issued" in text
    status, set_cookie = page(server, f"Cookie: _xsrf={raw}")
    assert status == 200 and len(token_of(set_cookie)) == 48


def test_a_token_the_client_chose_is_403(server: ServerProcess) -> None:
    status, text = post(server, "test-token")  # any [A-Za-z0-9_-]+ was accepted before
    assert status == 403 and "not one this server issued" in text
    assert post(server, "A" * 48)[0] == 403  # the shape of a token, not its MAC


def test_a_cross_site_post_is_403_even_with_a_matching_planted_cookie(
        server: ServerProcess) -> None:
    # A sibling subdomain or a plain-HTTP page can plant a cookie: here, a real token the
    # attacker fetched for itself, sent as cookie and field, so the double submit matches.
    planted = token_of(page(server)[1])
    assert post(server, planted, "Sec-Fetch-Site: cross-site")[0] == 403
    assert post(server, planted, "Origin: https://evil.example")[0] == 403
    assert post(server, planted, "Origin: null")[0] == 403
    assert post(server, planted, "Origin: http://x.evil.example")[0] == 403
    # Each alone is enough; the same token from this site is taken.
    status, text = post(server, planted, "Origin: http://x", "Sec-Fetch-Site: same-origin")
    assert status == 200, text
    assert post(server, planted)[0] == 200  # a client that sends neither (not a browser)


def test_behind_tls_the_cookie_is_secure() -> None:
    with ServerProcess("--trusted-proxies", "127.0.0.1", env=STORE_SECRET) as server:
        _, secure = page(server, "X-Forwarded-Proto: https")
        assert "; Secure" in secure and secure.startswith("_xsrf=")
        assert "Secure" not in page(server, "X-Forwarded-Proto: http")[1]
        assert "Secure" not in page(server)[1]
        token = token_of(secure)
        # The page is https: an http Origin is another origin.
        assert post(server, token, "X-Forwarded-Proto: https", "Origin: http://x")[0] == 403
        assert post(server, token, "X-Forwarded-Proto: https", "Origin: https://x")[0] == 200
    with ServerProcess(env=STORE_SECRET) as untrusted:  # nobody's X-Forwarded-Proto is believed
        assert "Secure" not in page(untrusted, "X-Forwarded-Proto: https")[1]


def test_a_memory_store_restart_makes_a_new_secret_and_the_page_a_new_cookie() -> None:
    with ServerProcess("--post-rate", "0", env=STORE_SECRET) as server:
        token = token_of(page(server)[1])
        assert post(server, token)[0] == 200
        port = server.port
        server.stop()
        server.start(port=port)
        assert post(server, token)[0] == 403
        status, fresh = page(server, f"Cookie: _xsrf={token}")  # fails the check: a new one
        assert status == 200 and token_of(fresh) != token
        assert post(server, token_of(fresh))[0] == 200


def test_a_given_secret_outlives_a_restart() -> None:
    with ServerProcess("--post-rate", "0") as server:  # CHAT_SECRET: the tests' secret
        assert post(server, XSRF)[0] == 200
        port = server.port
        server.stop()
        server.start(port=port)
        assert post(server, XSRF)[0] == 200
        assert page(server, f"Cookie: _xsrf={XSRF}")[1] == ""  # valid: kept


@pytest.mark.redis
def test_redis_processes_share_the_secret(redis_url: str) -> None:
    with ServerProcess("--store", redis_url, env=STORE_SECRET) as a, \
            ServerProcess("--store", redis_url, env=STORE_SECRET) as b:
        token = token_of(page(a)[1])
        assert post(b, token)[0] == 200
        assert page(b, f"Cookie: _xsrf={token}")[1] == ""
    other = RedisServer().start()
    try:
        with ServerProcess("--store", other.url, env=STORE_SECRET) as c:
            assert post(c, token)[0] == 403  # another deployment, another secret
    finally:
        other.close()
