"""Protocol helpers for tests: post, poll and stream the way a real client does."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from chat.settings import Settings
from chat.web.keys import feed_key
from chat.web.xsrf import sign

# Every test server signs its XSRF tokens with this secret (TEST_SETTINGS, and CHAT_SECRET for
# ServerProcess), so XSRF is a valid token on all of them, as cookie and as field. Tests of the
# secret itself (tests/system/test_xsrf.py) use the store's secret and fetch the page instead.
TEST_SECRET = "test-secret-0123456789"
XSRF = sign(TEST_SECRET.encode(), b"test-token-nonce--")
# CHAT_FUZZ_EXAMPLES=N: every property and fuzz test runs N examples (make fuzz); 0: their own.
FUZZ_EXAMPLES = int(os.environ.get("CHAT_FUZZ_EXAMPLES") or 0)
TEST_SETTINGS = Settings(port=0, poll_timeout=2.0, ping_interval=30.0, retry_ms=1000,
                         post_rate=0, max_client_connections=0, max_clients=0, request_rate=0,
                         max_address_connections=0, max_address_streams=0, secret=TEST_SECRET,
                         metrics_cache=0.0)  # tests read gauges as they change
NO_LIMITS = ("--post-rate", "0", "--max-client-connections", "0", "--max-clients", "0",
             "--request-rate", "0", "--max-address-connections", "0", "--max-address-streams", "0")


# What runs an app-level test that does not involve the store's behaviour (forms, XSRF, limits,
# escaping, errors, the metrics format...): one store. Every other app-level test runs on each
# store (conftest's ``store_url``). A whole module says so with a ``store_url`` fixture of its own.
one_store = pytest.mark.parametrize("store_url", ["memory"])


def wire_json(value: Any) -> bytes:
    """The contract's JSON: compact UTF-8, with every control character, U+2028 and U+2029
    escaped (an oracle written from the contract, not from chat/)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return "".join(f"\\u{ord(c):04x}" if 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" else c
                   for c in text).encode()


def sqlite_url(path: Path) -> str:
    """``--store`` for a SQLite file (absolute: ``sqlite:////tmp/...``)."""
    return f"sqlite:///{path.resolve()}"


def with_settings(**changes: Any) -> Settings:
    """TEST_SETTINGS with some fields changed."""
    return dataclasses.replace(TEST_SETTINGS, **changes)


class FakeClock:
    """A monotonic clock that moves only when told: what a test passes for the app's clock
    (``create_app(clock=...)``: limits, the metrics cache, presence) or a core object's."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclasses.dataclass
class Chat:
    """Protocol steps in one place: post, poll and stream the way a real client does."""

    client: TestClient[Any, Any]

    async def post_raw(self, body: str | None = "hi", **fields: str) -> ClientResponse:
        data = {"_xsrf": XSRF, **fields}
        if body is not None:
            data["body"] = body
        return await self.client.post("/a/message/new", data=data, allow_redirects=False)

    async def post(self, body: str = "hi", **fields: str) -> dict[str, Any]:
        response = await self.post_raw(body, **fields)
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result

    async def poll(self, **fields: str) -> dict[str, Any]:
        response = await self.client.post("/a/message/updates", data={"_xsrf": XSRF, **fields})
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result

    async def history(self, room: str = "main") -> list[dict[str, Any]]:
        """The newest ``--history`` messages of ``room``, oldest first, read from the feed."""
        page = await self.client.app[feed_key].read(room, None)
        return [m.as_dict() for m in page.messages]

    async def rooms(self) -> list[tuple[str, int, float | None]]:
        """GET /a/rooms: (room, count, last_ts) of each room listed, in order."""
        response = await self.client.get("/a/rooms")
        assert response.status == 200
        return [(r["room"], r["count"], r["last_ts"]) for r in (await response.json())["rooms"]]

    def stream(self, headers: dict[str, str] | None = None, control: bool = False,
               **query: str) -> SSEStream:
        return SSEStream(self.client, query, headers or {}, control)

    async def metric(self, name: str) -> float:
        text = await (await self.client.get("/metrics")).text()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in /metrics")

    async def until_metric(self, name: str, value: float, timeout: float = 5.0) -> None:
        await until(lambda: self.metric(name), value, timeout)


_CONTROL = (b"event: presence\n", b"event: typing\n")


def without_control(body: bytes) -> bytes:
    """An SSE body without its presence and typing frames (which come and go with people)."""
    frames = body.split(b"\n\n")
    return b"\n\n".join(f for f in frames if not f.startswith(_CONTROL))


class SSEStream:
    """An open GET /a/message/stream; reads the de-chunked body as raw bytes and as events.

    Presence and typing frames (no ``id:``, sent whenever a room's people change) are set
    aside in ``control`` unless ``control=True`` asks to read them like any other frame, so a
    test of messages reads exactly the message bytes.
    """

    def __init__(self, client: TestClient[Any, Any], query: dict[str, str],
                 headers: dict[str, str], control: bool = False) -> None:
        self.client, self.query, self.headers = client, query, headers
        self.response: ClientResponse | None = None
        self.buffer = b""
        self.keep_control = control
        self.control: list[dict[str, Any]] = []
        self._raw = b""

    async def _fill(self, timeout: float) -> None:
        """Read more of the body; whole frames go to ``buffer`` (control frames aside)."""
        assert self.response is not None
        chunk = await asyncio.wait_for(self.response.content.readany(), timeout)
        if not chunk:
            raise EOFError(f"stream ended after {self.buffer + self._raw!r}")
        self._raw += chunk
        while b"\n\n" in self._raw:
            frame, _, self._raw = self._raw.partition(b"\n\n")
            if not self.keep_control and frame.startswith(_CONTROL):
                self.control.append(parse_frame(frame + b"\n\n"))
            else:
                self.buffer += frame + b"\n\n"

    async def __aenter__(self) -> SSEStream:
        self.response = await self.client.get("/a/message/stream", params=self.query,
                                              headers=self.headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.response is not None
        self.response.close()

    async def read_bytes(self, n: int, timeout: float = 5.0) -> bytes:
        """Exactly ``n`` more bytes of the body."""
        while len(self.buffer) < n:
            await self._fill(timeout)
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    async def read_frame(self, timeout: float = 5.0) -> bytes:
        """The next frame, up to and including its blank line."""
        while b"\n\n" not in self.buffer:
            await self._fill(timeout)
        frame, _, self.buffer = self.buffer.partition(b"\n\n")
        return frame + b"\n\n"

    async def read_event(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame that is an event (comments and retry-only frames are skipped)."""
        while True:
            fields = parse_frame(await self.read_frame(timeout))
            if "event" in fields or "data" in fields:
                return fields

    async def messages(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while len(out) < n:
            event = await self.read_event(timeout)
            assert event.get("event") == "message", event
            out.append(json.loads(event["data"]))
        return out

    async def ended(self, timeout: float = 5.0) -> bool:
        """True once the server has closed the body (reading everything still in flight)."""
        while True:
            try:
                await self._fill(timeout)
            except EOFError:
                return True


def parse_frame(frame: bytes) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for line in frame.decode().split("\n"):
        if not line or line.startswith(":"):
            continue
        key, _, value = line.partition(": ")
        fields[key] = value
    return fields


def position(message_id: str) -> tuple[int, ...]:
    """An id's position as numbers: ids of one epoch increase in this order."""
    return tuple(int(part) for part in message_id.split("-")[1:])


def zero_cursor(message_id: str) -> str:
    """The cursor before the first message of ``message_id``'s history: the base of a room whose
    every message is still held."""
    epoch, _ = message_id.split("-")
    return f"{epoch}-0"


def future_cursor(message_id: str) -> str:
    """A well-formed cursor of the same epoch beyond ``message_id``: never issued."""
    head, _, last = message_id.rpartition("-")
    return f"{head}-{int(last) + 1000}"


def wrong_shape_cursor(message_id: str) -> str:
    """A cursor of the same epoch with two position numbers (the Redis store's shape before
    one grammar): malformed now."""
    epoch, _ = message_id.split("-")
    return f"{epoch}-1-0"


POLL = 0.02  # seconds between two looks of until() and until_sync()


async def until(probe: Callable[[], Any], value: Any, timeout: float = 10.0) -> None:
    """Wait until ``probe()`` equals ``value``, looking every POLL seconds; fail with the last value
    seen. ``probe`` may be a coroutine function (it is awaited) or a plain one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        seen = probe()
        if inspect.isawaitable(seen):
            seen = await seen
        if seen == value:
            return
        if loop.time() > deadline:
            raise AssertionError(_still(timeout, seen, value))
        await asyncio.sleep(POLL)


def until_sync(probe: Callable[[], Any], value: Any, timeout: float = 10.0) -> None:
    """``until`` for code without an event loop (a blocking probe: a raw socket, a subprocess)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = probe()
        if seen == value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(_still(timeout, seen, value))
        time.sleep(POLL)


def _still(timeout: float, seen: Any, value: Any) -> str:
    return f"after {timeout}s still\n  {seen!r}\nexpected\n  {value!r}"


# What the server logs once it listens: aiohttp's line (one process), gunicorn's (--workers).
_LISTENING = re.compile(rb"(?:Running on|Listening at:) http://\[?[^\s\]]*\]?:(\d+)")


@contextlib.asynccontextmanager
async def chat_on(process: ServerProcess) -> AsyncIterator[Chat]:
    """A Chat speaking to a real server process (the cookie jar must accept an IP host)."""
    async with aiohttp.ClientSession(process.url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        s.cookie_jar.update_cookies({"_xsrf": XSRF})
        yield Chat(s)  # type: ignore[arg-type]  # a ClientSession speaks like a TestClient


class ServerProcess:
    """A real ``python -m chat``: the production start path, and the one way tests start a server
    process (``run_chat`` runs one that is to exit at once: a refused option, a refused file).

    The first start passes ``--port 0``: the server binds a free port itself and logs it, so no
    other process can take the port between choosing and binding it. ``start(port)`` asks for a
    given port (a restart where clients left it), retrying while the port is still busy.
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None,
                 host: str = "127.0.0.1", cwd: Path | None = None) -> None:
        # CHAT_SECRET: XSRF is valid here; env={"CHAT_SECRET": ""} leaves the secret to the store.
        self.args, self.env, self.host = args, {"CHAT_SECRET": TEST_SECRET, **(env or {})}, host
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log = tempfile.TemporaryFile()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, port: int = 0, timeout: float = 15.0) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while True:
            self.log.seek(0)
            self.log.truncate()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chat", "--host", self.host, "--port", str(port),
                 *self.args],
                stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
                cwd=self.cwd)
            with contextlib.suppress(AssertionError):  # judged below, with the log to show
                until_sync(self._listening_or_gone, True, max(0.0, deadline - time.monotonic()))
            listening = self._listening()
            if listening is not None:
                self.port = listening
                return self
            busy = "address already in use" in self.output().lower()
            self.stop()
            if not (port and busy and time.monotonic() < deadline):
                raise RuntimeError(f"python -m chat did not start:\n{self.output()}")
            time.sleep(0.1)  # the port of the last run is still held: try again

    def _listening_or_gone(self) -> bool:
        assert self.proc is not None
        return self._listening() is not None or self.proc.poll() is not None

    def _listening(self) -> int | None:
        """The port the server's log says it listens on, once it says so."""
        found = _LISTENING.search(self.output().encode())
        return int(found.group(1)) if found else None

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log.close()


def run_chat(*args: str, env: dict[str, str] | None = None,
             module: str = "chat") -> subprocess.CompletedProcess[str]:
    """``python -m chat ARGS`` (or another ``module``'s command) run to its end: a command that is
    to exit at once (--help, a refused option or file). Its output as text."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=30)


@dataclasses.dataclass
class RawReply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    closed: bool  # the server ended the connection after this reply


def raw_exchange(port: int, data: bytes, *, sock: socket.socket | None = None,
                 timeout: float = 5.0, keep: bool = False) -> RawReply:
    """Send ``data`` on a new connection (or ``sock``), read one reply with a Content-Length
    body, then whether the server closes the connection within ``timeout`` (EOF or reset).
    ``keep``: leave the connection open for another request (``closed`` is then False)."""
    conn = sock or socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn.settimeout(timeout)
    try:
        if data:
            conn.sendall(data)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = conn.recv(65536)
            assert chunk, f"closed before a reply: {buffer!r}"
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = conn.recv(65536)
            assert chunk, "closed in the middle of the body"
            rest += chunk
        closed = False
        try:
            closed = not keep and conn.recv(65536) == b""
        except ConnectionError:
            closed = True
        except TimeoutError:
            pass
        return RawReply(int(status_line.split()[1]), headers, rest[:length], closed)
    finally:
        if not keep:
            conn.close()


def form_request(path: str, form: bytes, *, content_type: str = "application/x-www-form-urlencoded",
                 token: str | None = None, extra: bytes = b"") -> bytes:
    """A POST with the XSRF cookie and ``form`` as its whole body (``extra``: more header lines)."""
    token = XSRF if token is None else token
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nCookie: _xsrf={token}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(form)}\r\n").encode(
        "utf-8", "surrogateescape") + extra + b"\r\n" + form


GET_METRICS = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def rss_mb(pid: int) -> float:
    """A process's resident memory, in MB (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def examples(default: int) -> int:
    """A property or fuzz test's budget: ``default`` in make test, CHAT_FUZZ_EXAMPLES if set."""
    return FUZZ_EXAMPLES or default
