"""Real parts for the browser tests: a `python -m chat` subprocess, an HTTP client that chats
without a browser, a TCP proxy that can cut connections, and a person at the page in Chromium.

Also imported by ``tests/browser/screenshot.py``, so nothing here depends on pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Dialog, Page, expect

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
# The flags verified in /work/shared/recipes.md: headless, no sandbox (we run as root in CI),
# nothing that phones home or updates itself while a test runs.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
INSTALL_HINT = f"chromium not found at {CHROMIUM}: apt-get install -y --no-install-recommends chromium"

# Short server timings keep the suite fast: EventSource reconnects after 300 ms, an idle
# long-poll answers after 10 s, heartbeats every 5 s.
SERVER_ARGS = ("--retry-ms", "300", "--poll-timeout", "10", "--ping-interval", "5",
               "--shutdown-timeout", "1", "--log-level", "INFO")

XSRF = "browser-test-token"  # what the HTTP client sends as both cookie and field
_RUNNING = re.compile(r"Running on http://[^:\s]+:(\d+)")


class ChatServer:
    """``python -m chat`` in a subprocess, the way production starts it.

    The first start passes ``--port 0``: the server binds a free port itself and logs it, so no
    other process can take the port between choosing and binding it. Starting again after
    ``stop()`` asks for that same port (the page must find the server where it left it),
    retrying while the port is still busy.
    """

    def __init__(self, *args: str) -> None:
        self.args = args
        self.port = 0
        self.lines: list[str] = []
        self.returncodes: list[int] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._booting: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        assert self.port, "the server has not started yet (await start() or ready())"
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def log(self) -> str:
        return "".join(self.lines)

    async def start(self, timeout: float = 20.0) -> None:
        assert not self.running, "already running"
        for attempt in itertools.count(1):
            first = len(self.lines)
            port = await self._spawn(timeout)
            if port is not None:
                self.port = port
                return
            busy = "address already in use" in "".join(self.lines[first:]).lower()
            if not (busy and self.port and attempt < 20):
                raise RuntimeError(f"python -m chat did not start; its stderr:\n{self.log}")
            await asyncio.sleep(0.25)

    def start_soon(self) -> None:
        """Boot in the background, e.g. while the browser launches; ``await ready()`` for it."""
        self._booting = asyncio.ensure_future(self.start())

    async def ready(self) -> None:
        booting, self._booting = self._booting, None
        if booting is not None:
            await booting

    async def _spawn(self, timeout: float) -> int | None:
        """Start the process; its port once it listens, or None if it exited first."""
        self.lines.append(f"--- python -m chat --port {self.port} {' '.join(self.args)}\n")
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "chat", "--port", str(self.port), *self.args, cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        ready: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(self._proc, ready))
        try:
            port = await asyncio.wait_for(asyncio.shield(ready), timeout)
        except TimeoutError:
            await self.stop()
            raise RuntimeError(f"python -m chat not listening after {timeout}s:\n{self.log}") from None
        if port is None:
            await self.stop()
        return port

    async def _read(self, proc: asyncio.subprocess.Process, ready: asyncio.Future[int | None]) -> None:
        """Keep every stderr line (shown when a test fails); resolve ``ready`` with the port."""
        assert proc.stderr is not None
        try:
            async for raw in proc.stderr:
                line = raw.decode(errors="replace")
                self.lines.append(line)
                match = _RUNNING.search(line)
                if match and not ready.done():
                    ready.set_result(int(match.group(1)))
        finally:
            if not ready.done():
                ready.set_result(None)

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, SIGKILL if it hangs; the exit status (None if it was not running)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                self.lines.append(f"--- still running {timeout}s after SIGTERM: killed\n")
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            await self._reader
        assert proc.returncode is not None
        self.returncodes.append(proc.returncode)
        self.lines.append(f"--- exited with status {proc.returncode}\n")
        return proc.returncode


class Api:
    """The other side of a conversation: plain HTTP to the server, no browser.

    It sends the same ``_xsrf`` value as cookie and header, the double submit the server checks.
    """

    def __init__(self, server: ChatServer) -> None:
        self.server = server
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"Cookie": f"_xsrf={XSRF}", "X-XSRFToken": XSRF},
            timeout=aiohttp.ClientTimeout(total=10))

    async def close(self) -> None:
        await self.session.close()

    async def post(self, body: str, name: str | None = None, room: str = "main") -> dict[str, Any]:
        data = {"body": body, "room": room, **({"name": name} if name else {})}
        async with self.session.post(self.server.url + "/a/message/new", data=data) as response:
            assert response.status == 200, await response.text()
            result: dict[str, Any] = await response.json()
            return result

    async def history(self, room: str = "main") -> list[dict[str, Any]]:
        """The server's whole buffer for a (non-empty) room, oldest first: a poll with no cursor."""
        async with self.session.post(self.server.url + "/a/message/updates",
                                     data={"room": room}) as response:
            assert response.status == 200, await response.text()
            reply: dict[str, Any] = await response.json()
        assert "messages" in reply and not reply.get("reset"), reply
        messages: list[dict[str, Any]] = reply["messages"]
        return messages

    async def history_ids(self, room: str = "main") -> list[str]:
        return [m["id"] for m in await self.history(room)]


@dataclasses.dataclass
class Request:
    """One HTTP request head the browser sent through the proxy."""

    conn: int
    line: str
    headers: dict[str, str]  # names lower-cased


class _RequestHeads:
    """Splits one connection's client-to-server bytes into request heads (skipping bodies)."""

    def __init__(self, conn: int, out: list[Request]) -> None:
        self.conn, self.out = conn, out
        self.buffer = bytearray()
        self.body_left = 0

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.body_left:
                n = min(self.body_left, len(self.buffer))
                del self.buffer[:n]
                self.body_left -= n
                if self.body_left:
                    return
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            line, *fields = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            del self.buffer[:end + 4]
            headers = {k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
            self.out.append(Request(self.conn, line, headers))
            self.body_left = int(headers.get("content-length", "0"))


class TcpProxy:
    """A TCP proxy in front of the server that can drop every connection, as a proxy restarting
    or a flaky network would.

    It records each request head the browser sends, and everything the server sends back, per
    connection. ``cut_at(marker)`` forwards the server's bytes up to ``marker`` and then drops
    all connections, so a stream breaks in the middle of an event. ``hold()`` makes new
    connections wait (the browser sees a request that hangs) until ``release()``.
    """

    def __init__(self, upstream: ChatServer) -> None:
        self.upstream = upstream
        self.port = 0
        self.requests: list[Request] = []
        self.replies: dict[int, bytearray] = {}
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ids = itertools.count(1)
        self._open = asyncio.Event()
        self._open.set()
        self._marker: bytes | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._open.set()
        self.cut()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        """Drop every open connection at once (RST), both towards the browser and the server."""
        for writer in list(self._writers):
            writer.transport.abort()

    def cut_at(self, marker: bytes) -> None:
        self._marker = marker

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def requests_to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.line.split(" ")[1].startswith(path)]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = next(self._ids)
        self._writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            await self._open.wait()
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream.port)
            self._writers.add(up_writer)
            self.replies[conn] = bytearray()
            await asyncio.gather(self._upstream(reader, up_writer, _RequestHeads(conn, self.requests)),
                                 self._downstream(up_reader, writer, self.replies[conn]))
        except OSError:
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()
            self._tasks.discard(task)

    async def _upstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        heads: _RequestHeads) -> None:
        await self._pipe(reader, writer, heads.feed)

    async def _downstream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          reply: bytearray) -> None:
        def forward(data: bytes) -> bytes | None:
            marker = self._marker
            if marker is not None and marker in data:
                self._marker = None
                return data[:data.index(marker)]  # what the browser gets before the cut
            return None

        await self._pipe(reader, writer, reply.extend, forward)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    record: Callable[[bytes], None],
                    cut: Callable[[bytes], bytes | None] = lambda data: None) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                partial = cut(data)
                if partial is not None:
                    record(partial)
                    writer.write(partial)
                    await writer.drain()
                    self.cut()
                    return
                record(data)
                writer.write(data)
                await writer.drain()
            writer.write_eof()


_FRAME = re.compile(rb"id: ([^\n]*)\nevent: ([a-z]+)\ndata: [^\n]*\n\n")


def sse_events(reply: bytes) -> list[tuple[str, str]]:
    """(event, id) of each complete SSE frame in a stream's raw (chunked) response bytes.

    Each frame is written as one chunk, so a frame's lines are never split by chunk headers.
    """
    return [(event.decode(), id_.decode()) for id_, event in _FRAME.findall(reply)]


# Runs before the page's own script: records each state #status shows, so a test can check the
# page passed through "offline" or "reconnecting" even when that lasted a moment.
_RECORD_STATES = """
window.__chatStates = [];
new MutationObserver(function () {
  var status = document.getElementById("status"), seen = window.__chatStates;
  var state = status && status.dataset.state;
  if (state && seen[seen.length - 1] !== state) seen.push(state);
}).observe(document, {subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"]});
"""


class Person:
    """Someone at the chat page in their own browser context (own cookies and storage).

    Every uncaught page error, console line and dialog is recorded: the fixtures fail a test
    whose page threw or opened a dialog, and show the console when a test fails.
    """

    def __init__(self, label: str, context: BrowserContext, page: Page) -> None:
        self.label = label
        self.context = context
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.console: list[str] = []
        self.requests: list[str] = []  # "METHOD url" of every request the page made
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._on_console)
        page.on("dialog", self._on_dialog)
        page.on("request", lambda request: self.requests.append(f"{request.method} {request.url}"))

    @classmethod
    async def arrive(cls, browser: Browser, url: str, *, label: str = "person", polling: bool = False,
                     **context_options: Any) -> Person:
        """A new context at ``url``; ``polling``: with ``window.EventSource`` removed before load."""
        context = await browser.new_context(**context_options)
        await context.add_init_script(_RECORD_STATES)
        if polling:
            await context.add_init_script("delete window.EventSource;")
        person = cls(label, context, await context.new_page())
        if url:
            await person.page.goto(url)
        return person

    def _on_console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    async def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    def requested(self, path: str) -> list[str]:
        return [r for r in self.requests if r.split(" ", 1)[1].split("?")[0].endswith(path)]

    async def states(self) -> list[str]:
        """Every ``#status`` data-state this document has shown, in order (repeats collapsed)."""
        states: list[str] = await self.page.evaluate("window.__chatStates")
        return states

    async def mark_document(self) -> None:
        """Tag the current document; ``same_document()`` is False after any reload or navigation."""
        await self.page.evaluate("window.__chatMark = true")

    async def same_document(self) -> bool:
        return bool(await self.page.evaluate("window.__chatMark === true"))

    @property
    def status(self) -> Any:
        return self.page.locator("#status")

    @property
    def messages(self) -> Any:
        return self.page.locator("#inbox .message")

    async def say(self, text: str) -> None:
        """Type into the message box and press Enter, as a person would."""
        await self.page.locator("#body").fill(text)
        await self.page.locator("#body").press("Enter")

    async def sees(self, text: str, timeout: float = 5000) -> None:
        """Wait until a message containing ``text`` is on this person's page."""
        await expect(self.messages.filter(has_text=text)).to_be_visible(timeout=timeout)

    async def ids(self) -> list[str]:
        """The message ids on the page, top to bottom (DOM id ``m<id>`` without the ``m``)."""
        ids: list[str] = await self.messages.evaluate_all("els => els.map(e => e.id.slice(1))")
        return ids

    async def bodies(self) -> list[str]:
        bodies: list[str] = await self.page.locator("#inbox .message .body").all_text_contents()
        return bodies

    async def close(self) -> None:
        await self.context.close()


# The ``arrive`` fixture: ``await arrive(label, url=..., polling=..., **context_options)``.
Arrive = Callable[..., Awaitable[Person]]


async def until(probe: Callable[[], Awaitable[Any]], expected: Any, timeout: float = 10.0) -> None:
    """Wait until ``await probe() == expected``; fail showing the last value seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        seen = await probe()
        if seen == expected:
            return
        if loop.time() > deadline:
            raise AssertionError(f"after {timeout}s still\n  {seen!r}\nexpected\n  {expected!r}")
        await asyncio.sleep(0.05)
