"""tcpinfo: what a TCP peer acknowledged, and closing with a reset. Real sockets on loopback."""

from __future__ import annotations

import socket

from chat.core import tcpinfo


def test_a_peer_that_reads_nothing_leaves_data_waiting_and_a_reset_frees_it() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.setblocking(False)
        sent = 0
        try:
            while True:  # until the kernel takes no more: the peer reads nothing
                sent += conn.send(b"x" * 65536)
        except BlockingIOError:
            pass
        waiting, acked = tcpinfo.progress(conn)
        assert waiting > 0 and 0 < acked < sent
        tcpinfo.reset_on_close(conn)
        conn.close()
        # The peer sees a reset, not an orderly end after the data that was still waiting.
        client.settimeout(5)
        try:
            while client.recv(65536):
                pass
            ended = "fin"
        except ConnectionResetError:
            ended = "reset"
        client.close()
        assert ended == "reset"


def test_no_socket_knows_nothing() -> None:
    assert tcpinfo.progress(None) == (0, 0)
    tcpinfo.reset_on_close(None)
