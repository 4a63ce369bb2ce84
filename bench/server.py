"""Start the chat server for a run (pinned to core 0), or point at one that is already running."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .clients import SECRET

SERVER_CORE = 0
HARNESS_CORE = 1


@dataclass
class Server:
    host: str
    port: int
    pid: int | None  # None: not ours and not given, so no CPU or RSS figures
    log: Path | None = None
    # After it stopped: its WARNING and ERROR lines (timestamps cut), counted; e.g. why a 503.
    warnings: Counter[str] = field(default_factory=Counter)

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2


def pin_harness() -> bool:
    """Run the harness on core 1 (the server gets core 0) when there are two or more cores."""
    if not can_pin():
        return False
    os.sched_setaffinity(0, {HARNESS_CORE})
    return True


@contextlib.contextmanager
def store_for_run(store: str) -> Iterator[str]:
    """The ``--store`` of one run: ``sqlite`` is a new file in a temporary directory, removed
    after the run (so every run starts from an empty file); anything else as it is."""
    if store != "sqlite":
        yield store
        return
    with tempfile.TemporaryDirectory(prefix="chat-bench-") as directory:
        yield f"sqlite:///{Path(directory).resolve()}/chat.db"


def command(python: str, port: int, store: str, loop: str, template: str | None,
            extra: list[str]) -> list[str]:
    """The server's command line: ``python -m chat`` unless ``--server-cmd`` gives a template.

    A template (for gunicorn with several workers, say) may use {python}, {port} and {store}.
    """
    if template:
        return [part.format(python=python, port=port, store=store) for part in shlex.split(template)]
    cmd = [python, "-m", "chat", "--host", "127.0.0.1", "--port", str(port), "--store", store,
           "--log-level", "WARNING",
           # No poll may time out during a run: a timeout is a re-poll that is not a delivery.
           "--poll-timeout", "600",
           # Every subscriber and the publisher are one address here: the per-client abuse limits
           # (posts/s, connections per address) and the process cap would refuse the load itself.
           "--post-rate", "0", "--max-client-connections", "0", "--max-clients", "0",
           "--request-rate", "0", "--max-address-connections", "0", "--max-address-streams", "0"]
    if loop == "asyncio":
        cmd.append("--no-uvloop")
    return cmd + extra


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def started(cmd: list[str], port: int, pin: bool, timeout: float = 20.0,
            env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run ``cmd`` (pinned to core 0 when ``pin``) until /healthz answers; SIGTERM it afterwards.
    ``env``: variables added to the server's environment (``CHAT_BENCH_PLAIN_FANOUT=1``)."""
    log = Path(tempfile.mkstemp(prefix="chat-bench-server-", suffix=".log")[1])

    def on_core_zero() -> None:  # runs in the child before exec: workers it forks inherit it
        os.sched_setaffinity(0, {SERVER_CORE})

    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=on_core_zero if pin else None,
                                env={**os.environ, "CHAT_SECRET": SECRET, **(env or {})})
    srv = Server("127.0.0.1", port, proc.pid, log)
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(f"http://127.0.0.1:{port}/healthz"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not come up: {cmd}\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        yield srv
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        text = log.read_text(errors="replace")
        srv.warnings.update(_problems(text))
        if "Traceback" in text:
            print(f"server log ({log}) has a traceback:\n{text[-3000:]}", file=sys.stderr)
        else:
            log.unlink()


_LOG_LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR) (.*)$", re.MULTILINE)
_NUMBERS = re.compile(r"\b\d+(\.\d+)?\b")


def _problems(log: str) -> Counter[str]:
    """The server's WARNING/ERROR lines, numbers blanked so that alike lines count as one."""
    return Counter(_NUMBERS.sub("N", f"{m.group(1)} {m.group(2)}")[:300]
                   for m in _LOG_LINE.finditer(log))


@dataclass
class Redis:
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_started(pin: bool) -> Iterator[Redis]:
    """A throwaway redis-server (no persistence, empty) on a free port for one run, on the
    harness's core when pinning (the server's core stays the server's); stopped afterwards.
    Never the machine's own Redis: every run gets a fresh one."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("--store redis needs redis-server on PATH")
    workdir = tempfile.mkdtemp(prefix="chat-bench-redis-")

    def on_harness_core() -> None:
        os.sched_setaffinity(0, {HARNESS_CORE})

    try:
        for _ in range(3):  # a free port can be taken meanwhile: try another
            port = free_port()
            proc = subprocess.Popen(
                [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--daemonize", "no", "--dir", workdir, "--logfile", f"{workdir}/redis.log"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                preexec_fn=on_harness_core if pin else None)
            deadline = time.monotonic() + 10
            while proc.poll() is None and time.monotonic() < deadline and not _pong(port):
                time.sleep(0.02)
            if proc.poll() is None and _pong(port):
                break
            proc.kill()
            proc.wait()
        else:
            raise RuntimeError(f"redis-server did not start: {Path(workdir, 'redis.log').read_text()}")
        try:
            yield Redis(port, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
