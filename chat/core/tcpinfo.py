"""How much a TCP peer has acknowledged, read from the kernel (Linux; elsewhere nothing is known)."""

from __future__ import annotations

import array
import contextlib
import fcntl
import socket
import struct
from typing import Any

_TIOCOUTQ: int | None = getattr(__import__("termios"), "TIOCOUTQ", None)
_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None)
_BYTES_ACKED = 120  # offset of tcpi_bytes_acked (u64) in struct tcp_info, Linux 4.1 and later
_INFO_SIZE = 128


_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset and keeps nothing


def reset_on_close(sock: Any) -> None:
    """Have closing ``sock`` reset the connection: the kernel then drops at once what it still
    holds for a peer that stopped reading, instead of keeping it until TCP_USER_TIMEOUT."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)


def progress(sock: Any) -> tuple[int, int]:
    """(bytes waiting in the kernel for the peer, bytes the peer has acknowledged so far).

    ``sock`` is the socket behind a transport (``get_extra_info("socket")``) or None. A peer that
    has data waiting and acknowledges nothing new is not accepting writes: it stopped reading
    (zero window) or it is gone without a word (half-open).
    """
    if sock is None or _TIOCOUTQ is None:
        return 0, 0
    with contextlib.suppress(OSError, ValueError):
        waiting = array.array("i", [0])
        fcntl.ioctl(sock.fileno(), _TIOCOUTQ, waiting)
        if waiting[0] == 0 or _TCP_INFO is None:
            return waiting[0], 0
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _INFO_SIZE)
        acked = struct.unpack_from("Q", info, _BYTES_ACKED)[0] if len(info) >= _INFO_SIZE else 0
        return waiting[0], acked
    return 0, 0
