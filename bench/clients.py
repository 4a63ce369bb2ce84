"""Cheap load clients: raw asyncio protocols that parse only what the count needs.

Per delivery a subscriber does one ``bytes.find`` for the id, a slice and two list appends; all
accounting (which message, latency, duplicates, order) happens after the run. A message is
recognised by its id: ``\\nid: <id>\\n`` in an SSE frame (chunk framing is never stripped: the
pattern cannot occur in it, and ``json.dumps`` never writes it inside ``data:``), ``{"id":"<id>"``
in a long-poll body.
"""

from __future__ import annotations

import asyncio
import functools
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
    """Arrivals of one client: ``ids[i]`` arrived at ``times[i]`` (perf_counter seconds).

    Every answer's status is kept in ``answers`` (one per request, in order). A non-200 answer
    (a 503 from a store that is busy or gone) is counted and the client asks again after
    ``retry`` seconds on a new connection, from the newest id it has; ``resume`` does the same
    at once, against the same server or another one (a reconnect storm, a rolling restart).
    """

    ready_cb: Callable[[Subscriber], None]

    def __init__(self, hostport: str, room: str, ready_cb: Callable[[Subscriber], None],
                 retry: float = 0.5) -> None:
        self.hostport = hostport
        self.room = room
        self.ready_cb = ready_cb
        self.retry = retry
        self.transport: asyncio.Transport | None = None
        self.ids: list[bytes] = []
        self.times: list[float] = []
        self.answers: list[int] = []  # the HTTP status of every answer's head, in order
        self.mark = -1  # len(ids) when the harness made it reconnect (a storm); -1: never
        self.error: str | None = None
        self.ready = False
        self.lost = False
        self._open = 0  # transports not yet lost (an aborted one may report after its successor)
        self._task: asyncio.Task[None] | None = None  # a (re)connection under way
        self._replacing = False  # this transport is closed on purpose: another one follows

    def request(self) -> bytes:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._open += 1
        self._replacing = False
        self.lost = False
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport.write(self.request())

    def connection_lost(self, exc: Exception | None) -> None:
        self._open -= 1
        if self._open > 0 or self._replacing:
            return
        self.lost = True
        if not self.ready:
            self.error = self.error or f"closed before ready: {exc}"
            self.ready_cb(self)

    def fail(self, why: str) -> None:
        self.error = why
        if self.transport is not None:
            self.transport.close()

    def refused(self, status: int) -> None:
        """A non-200 answer: counted; ask again after ``retry`` seconds (or give up)."""
        self.answers.append(status)
        if not self.retry:
            self.fail(f"HTTP {status}")
            return
        self.reconnect(self.hostport, self.retry)

    def reconnect(self, hostport: str, delay: float = 0.0) -> None:
        """Drop this connection and ask again from the newest id, on ``hostport``."""
        self._replacing = True
        self.hostport = hostport
        if self.transport is not None:
            self.transport.abort()
        self.reset_parser()
        loop = asyncio.get_running_loop()
        if delay:
            loop.call_later(delay, self._start_open)
        else:
            self._start_open()

    def _start_open(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.open())

    def reset_parser(self) -> None:
        pass

    async def open(self, attempts: int = 5) -> None:
        """Connect (again); retried a few times when connecting itself fails."""
        host, port = self.hostport.rsplit(":", 1)
        loop = asyncio.get_running_loop()
        for attempt in range(attempts):
            try:
                await loop.create_connection(functools.partial(_same, self), host, int(port))
                return
            except OSError as exc:
                if attempt == attempts - 1:
                    self._replacing = False
                    self.error = f"cannot connect: {exc}"
                    self.lost = True
                    if not self.ready:
                        self.ready_cb(self)
                    return
                await asyncio.sleep(0.1 * 2**attempt)

    def close(self) -> None:
        self._replacing = True  # no retry after the run
        if self.transport is not None:
            self.transport.abort()  # no TIME_WAIT pile-up across runs


def _same(protocol: asyncio.Protocol) -> asyncio.Protocol:
    """A protocol factory that returns the one protocol made already."""
    return protocol


class SSESubscriber(Subscriber):
    """GET /a/message/stream; ready once the opening comment has arrived (the hub has us then).

    A reconnection sends ``Last-Event-ID`` with the newest id received, as EventSource does.
    ``opened`` holds when each stream opened, ``asked`` when the last request was made, and
    ``resets`` counts ``event: reset`` frames (whose ids are not messages).
    """

    def __init__(self, hostport: str, room: str, ready_cb: Callable[[Subscriber], None],
                 retry: float = 0.5) -> None:
        super().__init__(hostport, room, ready_cb, retry)
        self.buf = b""
        self.streaming = False  # the current connection's opening has arrived
        self.opened: list[float] = []
        self.asked = 0.0
        self.resets = 0
        self.opened_cb: Callable[[SSESubscriber], None] | None = None  # each time a stream opens
        self.name: str | None = None  # who this is, for presence (None: counted, not listed)

    def request(self) -> bytes:
        self.asked = perf()
        resume = f"Last-Event-ID: {self.ids[-1].decode()}\r\n" if self.ids else ""
        named = f"&name={quote(self.name)}" if self.name else ""
        return (f"GET /a/message/stream?room={quote(self.room)}{named} HTTP/1.1\r\nHost: {self.hostport}"
                f"\r\nAccept: text/event-stream\r\n{resume}\r\n").encode()

    def reset_parser(self) -> None:
        self.buf = b""
        self.streaming = False

    def data_received(self, data: bytes) -> None:
        t = perf()
        buf = self.buf + data if self.buf else data
        if not self.streaming:
            if not buf.startswith(b"HTTP/1.1 200"):
                if len(buf) >= 12:
                    self.refused(int(buf[9:12]))
                else:
                    self.buf = buf
                return
            if b"stream open" not in buf:
                self.buf = buf
                return
            self.answers.append(200)
            self.streaming = True
            self.opened.append(t)
            if self.opened_cb is not None:
                self.opened_cb(self)
            if not self.ready:
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
            # A reset frame's id is a base, not a message (if the frame is split right here it
            # is kept, and the accounting counts it as an unknown id).
            if buf.startswith(b"event: reset", j + 1):
                self.resets += 1
            else:
                ids.append(buf[i + 5:j])
                times.append(t)
            i = buf.find(_SSE_ID, j)
        self.buf = buf[-4:]  # "\nid:" may be split across reads


class Poller(Subscriber):
    """POST /a/message/updates on one keep-alive connection, re-polling from the newest id at once."""

    def __init__(self, hostport: str, room: str, ready_cb: Callable[[Subscriber], None],
                 retry: float = 0.5) -> None:
        self.head = (f"POST /a/message/updates HTTP/1.1\r\nHost: {hostport}\r\nCookie: _xsrf={XSRF}"
                     "\r\nContent-Type: application/x-www-form-urlencoded\r\n").encode()
        self.form = f"room={quote(room)}&_xsrf={XSRF}".encode()
        super().__init__(hostport, room, ready_cb, retry)
        self.buf = b""
        self.need = -1  # bytes of the current response (head + body), -1 until its head is in
        self.polls = 0
        self.timeouts = 0
        self.resets = 0

    def request(self) -> bytes:
        self.polls += 1
        cursor = self.ids[-1] if self.ids else b""
        body = self.form + b"&cursor=" + cursor if cursor else self.form
        return b"%sContent-Length: %d\r\n\r\n%s" % (self.head, len(body), body)

    def reset_parser(self) -> None:
        self.buf = b""
        self.need = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self.ready:
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
                    self.refused(int(buf[9:12]))
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
            self.answers.append(200)
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
        self.transport.write(self.request())


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


class Posts:
    """``POST /a/message/new`` requests of one body, cheap to make for any room: the body is
    percent-encoded once (4,096 emoji are 49,152 bytes of it), a request is then two joins."""

    def __init__(self, host: str, body: str) -> None:
        self.head = (f"POST /a/message/new HTTP/1.1\r\nHost: {host}\r\nCookie: _xsrf={XSRF}\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ").encode()
        self.tail = f"&_xsrf={XSRF}&body=".encode() + quote(body).encode()

    def __call__(self, room: str) -> bytes:
        form = b"room=" + quote(room).encode() + self.tail
        return b"%s%d\r\n\r\n%s" % (self.head, len(form), form)


ASTRAL = [chr(c) for c in range(0x1F600, 0x1F650)]  # emoticons: 4 bytes of UTF-8 each


def make_body(chars: int, kind: str) -> str:
    """A message body of ``chars`` characters: ``ascii`` (words, 1 byte each) or ``astral``
    (emoji, 4 bytes of UTF-8 each); 0 characters: the short default body."""
    if chars <= 0:
        return "flood message"
    if kind == "astral":
        return "".join(ASTRAL[i % len(ASTRAL)] for i in range(chars))
    if kind != "ascii":
        raise ValueError(f"body kind {kind!r}: expected ascii or astral")
    text = ("chat bench message " * (chars // 19 + 1))[:chars]
    return text[:-1] + "x" if text.endswith(" ") else text  # the server trims the ends
