"""Identities that cannot be forged, against a real ``python -m chat`` behind a trusted proxy
(the test is the proxy: 127.0.0.1 is trusted, so X-Forwarded-For names the client).

The client is read from every X-Forwarded-For line, from the right; a header with a hop that is
not an address is ignored (the peer counts); an IPv6 client is its /64; what lands in the log is
quoted so that no client text can add a key.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator

import pytest

from ..support import XSRF, ServerProcess, form_request, raw_exchange

BURST = 20


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    with ServerProcess("--trusted-proxies", "127.0.0.1", "--post-rate", "0.01",
                       "--post-burst", str(BURST)) as process:
        yield process


def post(server: ServerProcess, *forwarded_lines: str, body: str = "hi") -> int:
    extra = b"Connection: close\r\n" + b"".join(
        f"X-Forwarded-For: {line}\r\n".encode() for line in forwarded_lines)
    form = urllib.parse.urlencode({"_xsrf": XSRF, "body": body}).encode()
    return raw_exchange(server.port, form_request("/a/message/new", form, extra=extra),
                        timeout=0.2).status


def test_a_line_of_its_own_ahead_of_the_proxys_cannot_lift_the_limit(
        server: ServerProcess) -> None:
    # The client sends its own X-Forwarded-For line, a new address each time; the proxy (HAProxy
    # and others add a line of their own) appends the address it saw: 203.0.113.7.
    statuses = [post(server, f"198.51.100.{i}", "203.0.113.7") for i in range(30)]
    assert statuses == [200] * BURST + [429] * 10
    # ... and the same in one line, where nginx appends to the client's.
    assert post(server, "198.51.100.99, 203.0.113.7") == 429
    assert post(server, "203.0.113.8") == 200  # someone else


def test_a_header_with_a_hop_that_is_not_an_address_names_the_peer(server: ServerProcess) -> None:
    forged = ["203.0.113.9 status=200 user=root", "junk, 203.0.113.9", "203.0.113.9:80", "unknown"]
    statuses = [post(server, forged[i % len(forged)]) for i in range(BURST + 1)]
    assert statuses == [200] * BURST + [429]  # all one client: the peer, 127.0.0.1
    log = server.output()
    assert "event=refused reason=posts client=127.0.0.1 method=POST" in log
    assert "user=root" not in log


def test_an_ipv6_client_is_its_64(server: ServerProcess) -> None:
    statuses = [post(server, f"2001:db8::{i:x}") for i in range(1, BURST + 5)]
    assert statuses == [200] * BURST + [429] * 4
    assert post(server, "2001:db8:0:1::1") == 200  # the next /64: another client
    assert "client=2001:db8::/64" in server.output()
