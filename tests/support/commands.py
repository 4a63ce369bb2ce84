"""The commands as their users run them (``python -m chat.tail``, ``python -m chat.post``), and
plain-HTTP helpers that post to and read from a server the way any client would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

import aiohttp

from . import XSRF, until

API_KEY = "test-api-key-0123456789"


class Command:
    """A ``python -m <module>`` subprocess whose stdout is read line by line, stderr kept whole."""

    def __init__(self, module: str, *args: str, stdin: bytes | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.module, self.args, self.stdin, self.env = module, args, stdin, env
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr = b""
        self._stderr_task: asyncio.Task[None] | None = None

    async def start(self) -> Command:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, *self.args,
            stdin=asyncio.subprocess.PIPE if self.stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(self.env or {})})
        if self.stdin is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(self.stdin)
            await self.proc.stdin.drain()
            self.proc.stdin.close()
        self._stderr_task = asyncio.create_task(self._read_stderr())
        return self

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.stderr += line

    @property
    def errors(self) -> str:
        return self.stderr.decode(errors="replace")

    async def line(self, timeout: float = 10.0) -> str:
        """The next line of stdout; fails with what stderr said if none comes in time."""
        assert self.proc is not None and self.proc.stdout is not None
        try:
            data = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            raise AssertionError(f"no line from {self.module} within {timeout}s; stderr:\n"
                                 f"{self.errors}") from None
        if not data:
            raise AssertionError(f"{self.module} closed stdout; stderr:\n{self.errors}")
        return data.decode().rstrip("\n")

    async def json_lines(self, n: int, timeout: float = 10.0) -> list[Any]:
        return [json.loads(await self.line(timeout)) for _ in range(n)]

    async def stderr_until(self, words: str, timeout: float = 10.0) -> None:
        try:
            await until(lambda: words in self.errors, True, timeout)
        except AssertionError:
            raise AssertionError(f"{words!r} not on stderr within {timeout}s:\n{self.errors}") from None

    async def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"{self.module} still running after {timeout}s; stderr:\n"
                                 f"{self.errors}") from None
        if self._stderr_task is not None:
            await self._stderr_task
        return code

    async def output(self) -> str:
        """Everything left on stdout, once the command has exited."""
        assert self.proc is not None and self.proc.stdout is not None
        return (await self.proc.stdout.read()).decode()

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        return await self.wait()

    async def __aenter__(self) -> Command:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._stderr_task is not None:
            await self._stderr_task


def tail(url: str, *args: str) -> Command:
    return Command("chat.tail", url, *args)


def post_command(url: str, *args: str, stdin: bytes | None = None,
                 env: dict[str, str] | None = None) -> Command:
    return Command("chat.post", url, *args, stdin=stdin, env=env)


async def post(url: str, body: str, room: str = "main") -> dict[str, Any]:
    """Post through the page's form, as a browser does (double-submit token of our choosing)."""
    async with aiohttp.ClientSession() as session, session.post(
            url + "/a/message/new", data={"body": body, "room": room, "_xsrf": XSRF},
            cookies={"_xsrf": XSRF}) as response:
        assert response.status == 200, await response.text()
        message: dict[str, Any] = await response.json()
        return message


async def history(url: str, room: str = "main") -> list[dict[str, Any]]:
    """Everything the server holds for ``room`` (a long-poll without a cursor; {} when empty)."""
    async with aiohttp.ClientSession() as session, session.post(
            url + "/a/message/updates", data={"room": room, "_xsrf": XSRF},
            cookies={"_xsrf": XSRF}) as response:
        assert response.status == 200, await response.text()
        reply: dict[str, Any] = await response.json()
        return list(reply.get("messages", []))


def bodies(items: list[Any]) -> list[Any]:
    """Each message's body, and each reset as {"reset": reason}, in order."""
    return [item if "reset" in item else item["body"] for item in items]
