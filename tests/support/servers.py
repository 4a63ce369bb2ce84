"""Real servers for tests: a throwaway redis-server, and a TCP proxy that can cut or stall the
way to it. (``python -m chat`` subprocesses are support.ServerProcess.)"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from . import free_port

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
        deadline = time.monotonic() + 10
        with redis.Redis(port=port, socket_connect_timeout=0.2) as client:
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    if client.ping():
                        return True
                except redis.ConnectionError:
                    time.sleep(0.02)
        return False

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
    every connection or only the one whose upstream end has a given local port."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._open = asyncio.Event()
        self._open.set()
        self._gates: dict[int, asyncio.Event] = {}  # upstream local port -> its own gate

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

    def release(self) -> None:
        self._open.set()
        for gate in self._gates.values():
            gate.set()

    async def close(self) -> None:
        self.release()
        await self.down()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        gate = self._gates[up_writer.get_extra_info("sockname")[1]] = asyncio.Event()
        gate.set()
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst, gate))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    gate: asyncio.Event) -> None:
        try:
            while data := await src.read(65536):
                await self._open.wait()
                await gate.wait()
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            self._writers.discard(dst)
            dst.transport.abort()
