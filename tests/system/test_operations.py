"""Operations against a real ``python -m chat``: who may read /metrics and how fresh it is, the
open-file limit, connections and requests per address, and a ``Server:`` without versions."""

from __future__ import annotations

import resource
import socket
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from ..support import GET_HEALTHZ, XSRF, ServerProcess, form_request, raw_exchange, until_sync


def get(server: ServerProcess, target: str, *headers: str) -> tuple[int, dict[str, str], bytes]:
    extra = "".join(f"{h}\r\n" for h in headers)
    reply = raw_exchange(server.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n{extra}"
                                      "Connection: close\r\n\r\n".encode())
    return reply.status, reply.headers, reply.body


def published(server: ServerProcess) -> float:
    for line in get(server, "/metrics")[2].decode().splitlines():
        if line.startswith("chat_messages_published_total "):
            return float(line.split()[1])
    raise AssertionError("no chat_messages_published_total")


def post(server: ServerProcess) -> int:
    form = urllib.parse.urlencode({"_xsrf": XSRF, "body": "hi"}).encode()
    return raw_exchange(server.port, form_request("/a/message/new", form,
                                                  extra=b"Connection: close\r\n")).status


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess("--trusted-proxies", "127.0.0.1", "--post-rate", "0") as process:
        yield process


def test_metrics_are_for_this_host_and_private_networks(server: ServerProcess) -> None:
    assert get(server, "/metrics")[0] == 200  # loopback
    assert get(server, "/metrics", "X-Forwarded-For: 10.1.2.3")[0] == 200  # a private scraper
    status, _, body = get(server, "/metrics", "X-Forwarded-For: 203.0.113.7")  # the Internet
    assert status == 403 and b"--metrics-allow" in body
    assert get(server, "/metrics", "X-Forwarded-For: 2001:db8::1")[0] == 403
    assert get(server, "/healthz", "X-Forwarded-For: 203.0.113.7")[0] == 200  # for balancers


def test_metrics_allow_narrows_it() -> None:
    with ServerProcess("--metrics-allow", "10.0.0.0/8") as server:
        assert get(server, "/metrics")[0] == 403


def test_metrics_cache_is_the_option_given() -> None:
    """--metrics-cache reaches the server: a scrape is the same text, even after a post and
    longer than the default (1 s) since the text was made. When the text is made again is
    tests/http/test_metrics.py's, on a fake clock."""
    with ServerProcess("--metrics-cache", "60", "--post-rate", "0") as server:
        first = published(server)
        assert post(server) == 200
        time.sleep(1.2)  # past the default cache age: only the option given can keep the text
        assert published(server) == first
    with ServerProcess("--metrics-cache", "0", "--post-rate", "0") as server:
        first = published(server)
        assert post(server) == 200
        assert published(server) == first + 1  # no cache: every scrape is made afresh


def test_the_open_file_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard <= 256:  # (a lower soft limit than the hard one is what the server must raise)
        pytest.skip(f"the hard open-file limit {hard} leaves no room below it")
    lowered = 256
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))  # the server inherits it
    try:
        with ServerProcess() as server:
            assert server.proc is not None
            with open(f"/proc/{server.proc.pid}/limits") as limits:
                line = next(row for row in limits if row.startswith("Max open files"))
            assert line.split()[3:5] == [str(hard), str(hard)], line
            assert f"open files limit raised from {lowered} to the hard limit {hard}" in \
                server.output()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_no_version_in_server(server: ServerProcess) -> None:
    for target in ["/", "/rooms/main", "/nowhere", "/static/chat.js", "/metrics", "/healthz"]:
        assert get(server, target)[1]["server"] == "chat", target
    assert get(server, "/a/message/stream?room=main")[1]["server"] == "chat"
    # A request aiohttp refuses before any route runs.
    garbage = raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nX: \x01\r\n\r\n")
    assert garbage.status == 400 and garbage.headers["server"] == "chat"


def test_connections_per_address_are_capped_but_not_for_a_trusted_proxy() -> None:
    with ServerProcess("--max-address-connections", "3") as server:
        held = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(3)]
        try:
            for sock in held:  # keep-alive connections that have each made a request
                assert raw_exchange(server.port, GET_HEALTHZ.replace(
                    b"Connection: close\r\n", b""), sock=sock, keep=True).status == 200
            fourth = raw_exchange(server.port, GET_HEALTHZ)
            assert fourth.status == 429 and fourth.closed
            assert b"too many open connections from your address (at most 3)" in fourth.body
            held.pop().close()
            until_sync(lambda: raw_exchange(server.port, GET_HEALTHZ).status, 200, 5)
        finally:
            for sock in held:
                sock.close()
    with ServerProcess("--max-address-connections", "3", "--trusted-proxies", "127.0.0.1") as proxied:
        held = [socket.create_connection(("127.0.0.1", proxied.port), timeout=5) for _ in range(6)]
        try:
            for sock in held:
                assert raw_exchange(proxied.port, GET_HEALTHZ.replace(
                    b"Connection: close\r\n", b""), sock=sock, keep=True).status == 200
        finally:
            for sock in held:
                sock.close()


def test_pages_streams_and_polls_have_a_request_rate() -> None:
    with ServerProcess("--request-rate", "0.1", "--request-burst", "5") as server:
        assert [get(server, "/")[0] for _ in range(5)] == [200] * 5
        status, headers, _ = get(server, "/rooms/other")
        assert status == 429 and int(headers["retry-after"]) >= 1
        stream = get(server, "/a/message/stream")
        assert stream[0] == 429 and stream[2].startswith(b'{"error": "too many requests')
        assert post(server) == 200  # posts have their own bucket
        assert get(server, "/metrics")[0] == 200 and get(server, "/healthz")[0] == 200
        assert 'chat_rate_limited_total{reason="requests"} 2.0' in get(server, "/metrics")[2].decode()
