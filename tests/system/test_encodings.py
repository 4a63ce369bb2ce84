"""Charsets and encodings that cannot stall the loop, against a real ``python -m chat``.

A charset outside the allow-list (punycode's decoder is quadratic), in the Content-Type, in a
multipart part or in ``_charset_``, is a 415 before a byte is decoded, also with a valid token
pair; a request ``Content-Encoding`` is a 415 before the body is read; both, and a 413, end the
connection at once instead of reading (and inflating) the rest. Statuses and closed connections
are asserted, not timings.
"""

from __future__ import annotations

import gzip
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from ..support import GET_HEALTHZ, XSRF, RawReply, ServerProcess, form_request, raw_exchange

# Valid punycode (the part after the last "-" is decoded with an insertion per character: 0.3 s
# of CPU for these 64 KB when it is decoded, which it must not be).
PUNYCODE_FORM = b"body=" + b"a" * 32000 + b"-" + b"ab" * 16000


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess("--post-rate", "0") as process:
        yield process


def healthz(server: ServerProcess) -> int:
    return raw_exchange(server.port, GET_HEALTHZ, timeout=0.2).status


def sending(port: int, data: bytes, body: bytes) -> tuple[socket.socket, threading.Thread]:
    """A connection that sends the headers ``data``, then ``body`` from a thread (a big body
    meets a server that answers and closes before taking it all)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(data)

    def send() -> None:
        try:
            sock.sendall(body)
        except OSError:
            pass  # refused and closed: the rest is not wanted

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return sock, thread


def refused(reply: RawReply, status: int, words: str) -> None:
    assert reply.status == status, reply
    assert words in reply.body.decode(), reply
    assert reply.headers["connection"] == "close" and reply.closed, reply


def test_a_punycode_form_is_415_and_the_connection_closes(server: ServerProcess) -> None:
    request = form_request("/a/message/new", PUNYCODE_FORM,
                           content_type="application/x-www-form-urlencoded; charset=punycode",
                           extra=f"X-XSRFToken: {XSRF}\r\n".encode())  # a valid token pair
    replies: list[RawReply] = []
    clients = [threading.Thread(target=lambda: replies.append(raw_exchange(server.port, request)))
               for _ in range(4)]
    for client in clients:
        client.start()
    assert healthz(server) == 200  # while they are answered
    for client in clients:
        client.join(10)
    assert len(replies) == 4
    for reply in replies:
        refused(reply, 415, "unsupported charset 'punycode'")
    assert healthz(server) == 200


@pytest.mark.parametrize("content_type, form", [
    ("multipart/form-data; boundary=b",
     b'--b\r\nContent-Disposition: form-data; name="_xsrf"\r\n\r\n' + XSRF.encode() +
     b'\r\n--b\r\nContent-Disposition: form-data; name="body"\r\n'
     b"Content-Type: text/plain; charset=punycode\r\n\r\n" + b"a" * 60000 + b"\r\n--b--\r\n"),
    ("application/x-www-form-urlencoded", b"_charset_=punycode&" + PUNYCODE_FORM),
], ids=["multipart-part", "charset-field"])
def test_punycode_in_a_part_or_in_charset_field_is_415(server: ServerProcess, content_type: str,
                                                       form: bytes) -> None:
    refused(raw_exchange(server.port, form_request("/a/message/new", form,
                                                   content_type=content_type)),
            415, "unsupported charset 'punycode'")


def test_a_gzip_bomb_is_415_before_it_is_read_and_the_connection_closes(
        server: ServerProcess) -> None:
    # 1,024 gzip members of a megabyte of zeros each: 1 MB that inflates to 1 GB.
    member = gzip.compress(b"\0" * (1 << 20), 9)
    bomb = member * 1024
    head = (f"POST /a/message/new HTTP/1.1\r\nHost: x\r\nCookie: _xsrf={XSRF}\r\n"
            f"X-XSRFToken: {XSRF}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n").encode()
    cpu = _cpu_seconds(server)
    sock, thread = sending(server.port, head, bomb)
    reply = raw_exchange(server.port, b"", sock=sock)
    refused(reply, 415, "Content-Encoding 'gzip' is not accepted")
    thread.join(10)
    assert healthz(server) == 200
    assert _cpu_seconds(server) - cpu < 3  # nothing was inflated (it took 17.5 s of CPU)


def test_a_413_closes_the_connection_at_once(server: ServerProcess) -> None:
    body = b"x" * (1 << 20)
    head = (f"POST /a/message/new HTTP/1.1\r\nHost: x\r\nCookie: _xsrf={XSRF}\r\n"
            f"X-XSRFToken: {XSRF}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {10 * len(body)}\r\n\r\n").encode()
    sock, thread = sending(server.port, head, body)
    refused(raw_exchange(server.port, b"", sock=sock), 413, "Maximum request body size")
    thread.join(10)
    assert healthz(server) == 200


def _cpu_seconds(server: ServerProcess) -> float:
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
