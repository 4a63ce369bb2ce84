"""Real servers for tests: a throwaway redis-server, a TCP proxy that can cut, stall or hold the
way to a server, and an HTTP front that can refuse streams or fail requests. (``python -m chat``
subprocesses are support.ServerProcess.)"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import aiohttp
import redis
from aiohttp import web

from . import free_port, until_sync

REDIS_SERVER = shutil.which("redis-server")


class RedisServer:
    """A redis-server with no persistence in a temporary directory; restartable on its port."""

    def __init__(self) -> None:
        assert REDIS_SERVER is not None
        self.dir = Path(tempfile.mkdtemp(prefix="chat-redis-"))
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, port: int | None = None) -> RedisServer:
        for _ in range(1 if port else 3):  # a free port can be taken meanwhile: try another
            candidate = port or free_port()
            assert REDIS_SERVER is not None
            proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(candidate), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--dir", str(self.dir),
                 "--logfile", str(self.dir / "redis.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._ready(proc, candidate):
                self.proc, self.port = proc, candidate
                return self
            proc.kill()
            proc.wait()
        log = (self.dir / "redis.log").read_text(errors="replace")
        raise RuntimeError(f"redis-server did not start:\n{log}")

    @staticmethod
    def _ready(proc: subprocess.Popen[bytes], port: int) -> bool:
        """Whether the server on ``port`` answers a PING within 10 s (False once it has exited)."""
        with redis.Redis(port=port, socket_connect_timeout=0.2) as client:

            def answers() -> bool:
                try:
                    return bool(client.ping())
                except redis.ConnectionError:
                    return False

            with contextlib.suppress(AssertionError):
                until_sync(lambda: proc.poll() is not None or answers(), True, 10)
            return proc.poll() is None and answers()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def flushall(self) -> None:
        with self.client() as c:
            c.flushall()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class TcpProxy:
    """Forwards 127.0.0.1:port to a target port. ``down()`` drops every connection and refuses
    new ones; ``stall()`` holds the bytes in flight (a hung network) until ``release()``, for
    every connection or only the one whose upstream end has a given local port. ``hold()`` makes
    new connections wait (accepted, not yet forwarded) until ``release()``; ``cut_at(marker)``
    forwards the target's bytes up to ``marker`` and then drops every connection, so a stream
    breaks in the middle of an event."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._open = asyncio.Event()
        self._open.set()
        self._gates: dict[int, asyncio.Event] = {}  # upstream local port -> its own gate
        self._accepting = asyncio.Event()
        self._accepting.set()
        self.held = 0  # connections waiting for release() now
        self.accepted = 0
        self._marker: bytes | None = None
        self.cuts = 0

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def stall(self, upstream_port: int | None = None) -> None:
        (self._open if upstream_port is None else self._gates[upstream_port]).clear()

    def upstream_ports(self) -> set[int]:
        return set(self._gates)

    def hold(self) -> None:
        self._accepting.clear()

    def cut_at(self, marker: bytes) -> None:
        self._marker = marker

    def release(self) -> None:
        self._accepting.set()
        self._open.set()
        for gate in self._gates.values():
            gate.set()

    async def close(self) -> None:
        self.release()
        await self.down()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        if not self._accepting.is_set():
            self.held += 1
            try:
                await self._accepting.wait()
            finally:
                self.held -= 1
            if self._server is None:  # went down meanwhile
                self._writers.discard(writer)
                writer.transport.abort()
                return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            self._writers.discard(writer)
            writer.transport.abort()
            return
        gate = self._gates[up_writer.get_extra_info("sockname")[1]] = asyncio.Event()
        gate.set()
        self._writers.add(up_writer)
        for src, dst, down in ((reader, up_writer, False), (up_reader, writer, True)):
            task = asyncio.create_task(self._pipe(src, dst, gate, down))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    gate: asyncio.Event, downstream: bool = False) -> None:
        try:
            while data := await src.read(65536):
                await self._open.wait()
                await gate.wait()
                marker = self._marker
                if downstream and marker is not None and marker in data:
                    self._marker = None
                    self.cuts += 1
                    dst.write(data[:data.index(marker)])  # what the client gets before the cut
                    await dst.drain()
                    for each in list(self._writers):
                        each.transport.abort()
                    return
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            self._writers.discard(dst)
            dst.transport.abort()


class HttpFront:
    """An HTTP reverse proxy in front of a chat server, as a misconfigured or failing proxy would
    be. It records every request (method, path, headers, body). ``refuse_streams = (status,
    content type)`` answers GET /a/message/stream itself with that status and an HTML page; each
    entry of ``faults`` (path, "503" | "429" | "drop") is used once by the next request to that
    path: "503"/"429" answer without asking the server, "drop" forwards the request and then
    closes the connection instead of answering (the server did store the message)."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.refuse_streams: tuple[int, str] | None = None
        self.faults: list[tuple[str, str]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def to(self, path: str) -> list[tuple[str, str, dict[str, str], bytes]]:
        return [r for r in self.requests if r[1].split("?")[0] == path]

    async def start(self) -> HttpFront:
        app = web.Application(client_max_size=1 << 24)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                              auto_decompress=False)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((request.method, request.path_qs, dict(request.headers), body))
        if request.path == "/a/message/stream" and self.refuse_streams is not None:
            status, content_type = self.refuse_streams
            return web.Response(status=status, text="<html><body>no streams here</body></html>",
                                content_type=content_type)
        fault = next((f for f in self.faults if f[0] == request.path), None)
        if fault is not None:
            self.faults.remove(fault)
            if fault[1] in ("503", "429"):
                return web.json_response({"error": "the front says wait"}, status=int(fault[1]),
                                         headers={"Retry-After": "0"})
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(request.method, self.target + request.path_qs,
                                         headers=headers, data=body) as upstream:
            data = await upstream.read()
            reply_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
        if fault is not None and fault[1] == "drop":
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError  # nothing more to say on this connection
        response = web.Response(status=upstream.status, body=data)
        response.headers.update(reply_headers)
        return response


_HOP = {"host", "connection", "keep-alive", "content-length", "transfer-encoding", "upgrade",
        "te", "trailer", "proxy-connection"}
