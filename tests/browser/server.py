"""``python -m chat`` in a subprocess, and an HTTP client that chats without a browser."""

from __future__ import annotations

import asyncio
import itertools
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp

from ..support import NO_LIMITS

ROOT = Path(__file__).resolve().parents[2]

# Short server timings keep the suite fast: EventSource reconnects after 300 ms, an idle
# long-poll answers after 10 s, heartbeats every 5 s. The tests post faster than people do, so
# the abuse limits are off (tests/http/test_limits.py covers them).
SERVER_ARGS = ("--retry-ms", "300", "--poll-timeout", "10", "--ping-interval", "5",
               "--shutdown-timeout", "1", "--log-level", "INFO", *NO_LIMITS)

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

    It sends the ``_xsrf`` token the page hands out as cookie and header, the double submit the
    server checks, and fetches a new one when the server no longer takes it (a restart of the
    memory store makes a new secret).
    """

    def __init__(self, server: ChatServer) -> None:
        self.server = server
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                             timeout=aiohttp.ClientTimeout(total=10))
        self._token: str | None = None

    async def close(self) -> None:
        await self.session.close()

    async def _post(self, path: str, data: dict[str, str]) -> aiohttp.ClientResponse:
        for fresh in (False, True):
            if self._token is None or fresh:
                async with self.session.get(self.server.url + "/") as page:
                    self._token = page.cookies["_xsrf"].value
            response = await self.session.post(
                self.server.url + path, data=data,
                headers={"Cookie": f"_xsrf={self._token}", "X-XSRFToken": self._token})
            if response.status != 403 or fresh:
                break
            response.release()
        return response

    async def post(self, body: str, name: str | None = None, room: str = "main") -> dict[str, Any]:
        data = {"body": body, "room": room, **({"name": name} if name else {})}
        async with await self._post("/a/message/new", data) as response:
            assert response.status == 200, await response.text()
            result: dict[str, Any] = await response.json()
            return result

    async def typing(self, name: str, room: str = "main") -> None:
        """Say that ``name`` is typing in ``room`` (POST /a/typing)."""
        async with await self._post("/a/typing", {"name": name, "room": room}) as response:
            assert response.status == 204, await response.text()

    async def history(self, room: str = "main") -> list[dict[str, Any]]:
        """The server's whole buffer for a (non-empty) room, oldest first: a poll with no cursor."""
        async with await self._post("/a/message/updates", {"room": room}) as response:
            assert response.status == 200, await response.text()
            reply: dict[str, Any] = await response.json()
        assert "messages" in reply and not reply.get("reset"), reply
        messages: list[dict[str, Any]] = reply["messages"]
        return messages

    async def history_ids(self, room: str = "main") -> list[str]:
        return [m["id"] for m in await self.history(room)]
