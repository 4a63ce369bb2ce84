"""tcpinfo: how much a TCP peer has taken, read from the kernel (Linux), on real sockets."""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Iterator

import pytest

from chat.core.tcpinfo import progress, reset_on_close

from ..support import until_sync


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(writer, reader): a loopback connection whose reader has a small receive buffer."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        reader = socket.socket()
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect(listener.getsockname())
        reader.settimeout(5)
        writer, _ = listener.accept()
    with writer, reader:
        yield writer, reader


def test_no_socket_is_no_news() -> None:
    assert progress(None) == (0, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TIOCOUTQ and TCP_INFO are Linux's")
def test_bytes_waiting_and_acknowledged_follow_a_peer_that_stops_and_reads(
        pair: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = pair
    assert progress(writer) == (0, 0)  # nothing sent: nothing waits
    writer.setblocking(False)
    sent = 0
    with contextlib.suppress(BlockingIOError):  # until every buffer on the way is full
        while True:
            sent += writer.send(b"x" * 65536)
    waiting, acked = progress(writer)
    assert waiting > 0 and acked + waiting == sent  # the reader's kernel took the rest
    received = len(reader.recv(4096))
    assert received > 0
    # It read some: more is acknowledged, and the rest still waits.
    until_sync(lambda: progress(writer)[1] > acked, True, 5)
    waiting, acked = progress(writer)
    assert waiting > 0 and acked + waiting == sent
    while received < sent:  # it reads everything: nothing waits
        received += len(reader.recv(1 << 20))
    until_sync(lambda: progress(writer), (0, 0), 5)


def test_closing_after_a_reset_request_resets_and_frees_what_waited(
        pair: tuple[socket.socket, socket.socket]) -> None:
    """What the hub and the reply writer do to a client that stopped reading: the peer sees a
    reset, not an orderly end after the data still waiting (which the kernel would keep)."""
    writer, reader = pair
    writer.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            writer.send(b"x" * 65536)
    assert progress(writer)[0] > 0
    reset_on_close(writer)
    writer.close()
    with pytest.raises(ConnectionResetError):
        while reader.recv(65536):
            pass
    reset_on_close(None)  # no socket: nothing to do
