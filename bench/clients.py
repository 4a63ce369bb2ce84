"""Cheap load clients: raw asyncio protocols that parse only what the count needs.

Per delivery a subscriber does one ``bytes.find`` for the id, a slice and two list appends; all
accounting (which message, latency, duplicates, order) happens after the run. A message is
recognised by its id: ``\\nid: <id>\\n`` in an SSE frame (chunk framing is never stripped: the
pattern cannot occur in it, and ``json.dumps`` never writes it inside ``data:``), ``{"id":"<id>"``
in a long-poll body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast
from urllib.parse import quote

from chat.web.xsrf import sign

# The servers the harness starts sign their XSRF tokens with this secret (CHAT_SECRET, set by
# bench.server.started), so one token, made here, is valid for every client; the floors check none.
SECRET = "bench-secret-0123456789"
XSRF = sign(SECRET.encode(), b"bench-token-nonce-")
_SSE_ID = b"\nid: "
_JSON_ID = b'{"id":"'
_HEAD_END = b"\r\n\r\n"

perf = time.perf_counter


class Subscriber(asyncio.Protocol):
    """Arrivals of one client: ``ids[i]`` arrived at ``times[i]`` (perf_counter seconds)."""

    ready_cb: Callable[[Subscriber], None]

    def __init__(self, request: bytes, ready_cb: Callable[[Subscriber], None]) -> None:
        self.request = request
        self.ready_cb = ready_cb
        self.transport: asyncio.Transport | None = None
        self.ids: list[bytes] = []
        self.times: list[float] = []
        self.error: str | None = None
        self.ready = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.ready:
            self.error = self.error or f"closed before ready: {exc}"
            self.ready_cb(self)

    def fail(self, why: str) -> None:
        self.error = why
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # no TIME_WAIT pile-up across runs


class SSESubscriber(Subscriber):
    """GET /a/message/stream; ready once the opening comment has arrived (the hub has us then)."""

    def __init__(self, host: str, room: str, ready_cb: Callable[[Subscriber], None]) -> None:
        request = (f"GET /a/message/stream?room={quote(room)} HTTP/1.1\r\nHost: {host}\r\n"
                   "Accept: text/event-stream\r\n\r\n").encode()
        super().__init__(request, ready_cb)
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        t = perf()
        buf = self.buf + data if self.buf else data
        if not self.ready:
            if b"stream open" not in buf:
                self.buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 200"):
                self.fail(buf[:buf.find(b"\r\n")].decode(errors="replace"))
                return
            self.ready = True
            self.ready_cb(self)
            buf = buf[buf.index(b"stream open"):]
        ids, times = self.ids, self.times
        i = buf.find(_SSE_ID)
        while i >= 0:
            j = buf.find(b"\n", i + 5)
            if j < 0:
                self.buf = buf[i:]
                return
            ids.append(buf[i + 5:j])
            times.append(t)
            i = buf.find(_SSE_ID, j)
        self.buf = buf[-4:]  # "\nid:" may be split across reads


class Poller(Subscriber):
    """POST /a/message/updates on one keep-alive connection, re-polling from the newest id at once."""

    def __init__(self, host: str, room: str, ready_cb: Callable[[Subscriber], None]) -> None:
        self.head = (f"POST /a/message/updates HTTP/1.1\r\nHost: {host}\r\nCookie: _xsrf={XSRF}\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n").encode()
        self.form = f"room={quote(room)}&_xsrf={XSRF}".encode()
        super().__init__(self._request(b""), ready_cb)
        self.buf = b""
        self.need = -1  # bytes of the current response (head + body), -1 until its head is in
        self.polls = 0
        self.timeouts = 0
        self.resets = 0

    def _request(self, cursor: bytes) -> bytes:
        body = self.form + b"&cursor=" + cursor if cursor else self.form
        return b"%sContent-Length: %d\r\n\r\n%s" % (self.head, len(body), body)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.polls = 1
        # Ready means "request sent"; the harness then waits for the server's poll-waiter gauge.
        self.ready = True
        self.ready_cb(self)

    def data_received(self, data: bytes) -> None:
        t = perf()
        buf = self.buf + data if self.buf else data
        while True:
            if self.need < 0:
                end = buf.find(_HEAD_END)
                if end < 0:
                    break
                if not buf.startswith(b"HTTP/1.1 200"):
                    self.fail(buf[:buf.find(b"\r\n")].decode(errors="replace"))
                    return
                k = buf.find(b"Content-Length: ", 0, end)
                if k < 0:
                    self.fail("response without Content-Length")
                    return
                self.need = end + 4 + int(buf[k + 16:buf.find(b"\r\n", k)])
            if len(buf) < self.need:
                break
            body = buf[buf.index(_HEAD_END) + 4:self.need]
            buf = buf[self.need:]
            self.need = -1
            self._answer(body, t)
        self.buf = buf

    def _answer(self, body: bytes, t: float) -> None:
        ids = self.ids
        i = body.find(_JSON_ID)
        if i < 0:
            self.timeouts += 1  # {} after --poll-timeout: poll again from the same cursor
        else:
            if b'"reset":true' in body[-16:]:
                self.resets += 1
            while i >= 0:
                j = body.index(b'"', i + 7)
                ids.append(body[i + 7:j])
                self.times.append(t)
                i = body.find(_JSON_ID, j)
        assert self.transport is not None
        self.polls += 1
        self.transport.write(self._request(ids[-1] if ids else b""))


class HTTPConn(asyncio.Protocol):
    """One keep-alive connection for sequential request/response (the publisher, the post test)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.buf = b""
        self.need = -1
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None and (self.waiter is None or self.waiter.done())
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        if self.need < 0:
            end = buf.find(_HEAD_END)
            if end < 0:
                self.buf = buf
                return
            k = buf.lower().find(b"content-length: ", 0, end)
            self.need = end + 4 + (int(buf[k + 16:buf.find(b"\r\n", k)]) if k >= 0 else 0)
        if len(buf) < self.need:
            self.buf = buf
            return
        status = int(buf[9:12])
        body = buf[buf.index(_HEAD_END) + 4:self.need]
        self.buf, self.need = b"", -1
        assert self.waiter is not None
        self.waiter.set_result((status, body))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def post_request(host: str, room: str, body: str) -> bytes:
    form = f"room={quote(room)}&_xsrf={XSRF}&body={quote(body)}".encode()
    return (f"POST /a/message/new HTTP/1.1\r\nHost: {host}\r\nCookie: _xsrf={XSRF}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(form)}\r\n\r\n").encode() + form


def message_id(body: bytes) -> bytes:
    """The id of the message in a POST /a/message/new reply."""
    i = body.index(_JSON_ID)
    return body[i + 7:body.index(b'"', i + 7)]
