"""Soak test: many clients connect, read, leave (cleanly or not) and come back, for minutes.

    python bench/soak.py                        # 1,000 clients for 5 minutes (make soak)
    python bench/soak.py --seconds 60           # shorter (make soak SOAK_SECONDS=60)
    python bench/soak.py --clients 20 --seconds 8 --json out.json

It starts ``python -m chat`` (generous abuse limits, ``--history 100000`` so that no resume
ever reaches an evicted message, the default queue size), measures the server's /metrics,
then runs a publisher (``--rate`` posts per second, round robin over ``--rooms`` rooms) and
``--clients`` clients, a mix of SSE streams that resume with Last-Event-ID and long-pollers that
resume with their cursor. Each client reads for a random while, disconnects (half of the time
with a FIN, half with a RST in the middle of a read or a poll), pauses a little and reconnects
from its cursor, for the whole run; at the end it catches up with the last message and leaves.

Afterwards it checks, and exits 1 if any check fails:

- ``chat_stream_clients`` and ``chat_poll_waiters`` are back to 0;
- ``process_open_fds`` and ``chat_asyncio_tasks`` are back to their baseline (within
  ``--fd-tolerance`` / ``--task-tolerance``, after up to ``--settle`` seconds);
- RSS (``process_resident_memory_bytes``) grew by less than ``--max-rss-growth-mb``;
- every client received every message of its room after its starting cursor, in order, with
  no gap and no duplicate, across all its reconnects, and never a reset (the server's own
  history, read back at the end, is the reference);
- the server logged no traceback and no ERROR, and exits 0 on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chat.web.xsrf import sign

ROOT = Path(__file__).resolve().parent.parent
# The soak's server signs XSRF tokens with this secret (CHAT_SECRET), so this token is valid.
SECRET = "soak-secret-0123456789"
XSRF = sign(SECRET.encode(), b"soak-token-nonce--")
LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a RST


# ---- the server -------------------------------------------------------------------------------

def server_args(port: int, args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "chat", "--port", str(port), "--history", "100000",
            # Everything comes from 127.0.0.1: the per-address limits must not apply to a soak.
            "--post-rate", "10000", "--post-burst", "10000",
            "--max-client-connections", str(args.clients * 4 + 100),
            "--max-clients", str(args.clients * 4 + 100), "--request-rate", "0",
            "--max-address-connections", "0", "--max-address-streams", "0", *args.server_arg]


def start_server(args: argparse.Namespace, log: Any) -> tuple[subprocess.Popen[bytes], int]:
    for _ in range(3):  # a free port can be taken between probing and binding: retry
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(server_args(port, args), cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, "CHAT_SECRET": SECRET})
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return proc, port
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    raise SystemExit("python -m chat did not start; its log:\n" + read_log(log))


def read_log(log: Any) -> str:
    log.seek(0)
    return str(log.read().decode(errors="replace"))


# ---- HTTP, by hand ----------------------------------------------------------------------------

async def request(port: int, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request on its own connection; (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = f"{method} {target} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n"
        if body:
            head += ("Content-Type: application/x-www-form-urlencoded\r\n"
                     f"Cookie: _xsrf={XSRF}\r\nContent-Length: {len(body)}\r\n")
        writer.write(head.encode() + b"\r\n" + body)
        status, payload = await read_reply(reader)
    finally:
        writer.close()
    return status, payload


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """A reply with a Content-Length body (everything /a/message/* and /metrics send)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def metrics(port: int) -> dict[str, float]:
    status, body = await request(port, "GET", "/metrics")
    assert status == 200, status
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def form(**fields: str) -> bytes:
    from urllib.parse import urlencode

    return urlencode({"_xsrf": XSRF, **fields}).encode()


# ---- the clients ------------------------------------------------------------------------------

@dataclass
class Client:
    number: int
    kind: str  # "stream" or "poll"
    room: str
    cursor: str  # the id of the last message fully received
    epoch: str
    rng: random.Random
    received: array[int] = field(default_factory=lambda: array("q"))
    sessions: int = 0
    abrupt: int = 0
    resets: int = 0
    refused: Counter[int] = field(default_factory=Counter)  # non-200 answers, by status
    errors: Counter[str] = field(default_factory=Counter)  # connections that failed

    @property
    def position(self) -> int:
        return int(self.cursor.rpartition("-")[2])

    def got(self, message_id: str) -> None:
        epoch, _, position = message_id.rpartition("-")
        if epoch != self.epoch:
            self.errors["foreign epoch"] += 1
        self.received.append(int(position))
        self.cursor = message_id


class Soak:
    def __init__(self, args: argparse.Namespace, port: int) -> None:
        self.args, self.port = args, port
        self.stopping = asyncio.Event()  # the publisher is done: catch up and leave
        # room -> position of its last message of the run, once stopping. A few more follow
        # (every 0.5 s, so that a waiting long-poll wakes up); a client leaves once it has this one.
        self.final: dict[str, int] = {}

    async def run_client(self, client: Client) -> None:
        session = self.stream_session if client.kind == "stream" else self.poll_session
        while not self.stopping.is_set():
            deadline = asyncio.get_running_loop().time() + client.rng.uniform(
                self.args.min_session, self.args.max_session)
            await self.guarded(client, session(client, deadline, client.rng.random() < 0.5))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), client.rng.uniform(0, 0.5))
        # Catch up: read until the room's last message of the run, then leave cleanly.
        while not self._caught_up(client):
            await self.guarded(client, session(client, None, False))

    async def guarded(self, client: Client, session: Any) -> None:
        client.sessions += 1
        try:
            await session
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            client.errors[type(exc).__name__] += 1
            await asyncio.sleep(0.2)

    def _end(self, writer: asyncio.StreamWriter, client: Client, abrupt: bool) -> None:
        if abrupt:
            client.abrupt += 1
            sock = writer.get_extra_info("socket")
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            writer.transport.abort()
        else:
            writer.close()

    def _caught_up(self, client: Client) -> bool:
        return self.stopping.is_set() and client.position >= self.final[client.room]

    async def stream_session(self, client: Client, deadline: float | None, abrupt: bool) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(f"GET /a/message/stream?room={client.room} HTTP/1.1\r\nHost: soak\r\n"
                         f"Accept: text/event-stream\r\nLast-Event-ID: {client.cursor}\r\n\r\n"
                         .encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            if status != 200:
                client.refused[status] += 1
                await asyncio.sleep(1)
                return
            reading = self._read_stream(client, reader)
            if deadline is None:
                await asyncio.wait_for(reading, self.args.catch_up)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reading, max(0.0, deadline -
                                                        asyncio.get_running_loop().time()))
        finally:
            self._end(writer, client, abrupt)

    async def _read_stream(self, client: Client, reader: asyncio.StreamReader) -> None:
        chunks = bytearray()  # the chunked body, not yet de-chunked
        events = bytearray()  # de-chunked event-stream text, not yet a whole frame
        while not self._caught_up(client):
            data = await reader.read(65536)
            if not data:
                raise ConnectionResetError("the server ended the stream")
            chunks += data
            while (eol := chunks.find(b"\r\n")) >= 0:
                size = int(chunks[:eol], 16)
                if len(chunks) < eol + 2 + size + 2:
                    break
                events += chunks[eol + 2:eol + 2 + size]
                del chunks[:eol + 2 + size + 2]
            while (end := events.find(b"\n\n")) >= 0:
                frame = bytes(events[:end])
                del events[:end + 2]
                if frame.startswith(b"id: "):
                    first = frame.find(b"\n")
                    message_id = frame[4:first].decode()
                    if frame.startswith(b"event: message\n", first + 1):
                        if b'"id":"%s"' % message_id.encode() not in frame:
                            client.errors["data does not match id"] += 1
                        client.got(message_id)
                    else:
                        client.resets += 1  # never due: history 100000 covers the whole run
                        client.cursor = message_id
                if self._caught_up(client):
                    return

    async def poll_session(self, client: Client, deadline: float | None, abrupt: bool) -> None:
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            while not self._caught_up(client):
                body = form(room=client.room, cursor=client.cursor)
                writer.write(b"POST /a/message/updates HTTP/1.1\r\nHost: soak\r\nCookie: _xsrf="
                             + XSRF.encode() + b"\r\nContent-Type: application/x-www-form-"
                             b"urlencoded\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                reply = read_reply(reader)
                if deadline is None:
                    status, payload = await asyncio.wait_for(reply, self.args.catch_up)
                elif abrupt:  # leave in the middle of a poll, when the time comes
                    try:
                        status, payload = await asyncio.wait_for(
                            reply, max(0.0, deadline - loop.time()))
                    except TimeoutError:
                        return
                else:  # leave after the poll in flight is answered
                    status, payload = await reply
                if status != 200:
                    client.refused[status] += 1
                    await asyncio.sleep(1)
                    return
                answer = json.loads(payload)
                if answer.get("reset"):
                    client.resets += 1
                for message in answer.get("messages", []):
                    client.got(message["id"])
                if deadline is not None and loop.time() >= deadline:
                    return
        finally:
            self._end(writer, client, abrupt)


# ---- the run ----------------------------------------------------------------------------------

async def publish(port: int, args: argparse.Namespace, rooms: list[str],
                  posted: dict[str, list[str]], go_on: Callable[[], bool],
                  interval: float = 0) -> int:
    """Post ``args.rate`` messages a second, round robin over the rooms, on one connection
    (with ``interval``: one to every room each ``interval`` seconds), while ``go_on()``;
    return how many posts failed."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    failures = 0
    n = 0
    next_at = loop.time()
    try:
        while go_on():
            room = rooms[n % len(rooms)]
            body = form(room=room, body=f"soak message {n} " + "x" * (n % 200))
            writer.write(b"POST /a/message/new HTTP/1.1\r\nHost: soak\r\nCookie: _xsrf="
                         + XSRF.encode() + b"\r\nContent-Type: application/x-www-form-urlencoded"
                         b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            status, payload = await read_reply(reader)
            if status == 200:
                posted[room].append(json.loads(payload)["id"])
            else:
                failures += 1
                print(f"soak: post to {room} answered {status}: {payload[:200]!r}", flush=True)
            n += 1
            if not interval:
                next_at += 1 / args.rate
            elif n % len(rooms) == 0:
                next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))
    finally:
        writer.close()
    return failures


async def history_after(port: int, room: str, cursor: str) -> list[str]:
    status, body = await request(port, "POST", "/a/message/updates",
                                 form(room=room, cursor=cursor))
    assert status == 200, (status, body)
    answer = json.loads(body)
    assert not answer.get("reset"), "the history lost the seed message: raise --history"
    return [m["id"] for m in answer.get("messages", [])]


GAUGES = ("chat_stream_clients", "chat_poll_waiters", "process_open_fds", "chat_asyncio_tasks",
          "process_resident_memory_bytes")


async def settle(port: int, baseline: dict[str, float], args: argparse.Namespace
                 ) -> dict[str, float]:
    """Metrics once the gauges are back (or ``--settle`` seconds have passed)."""
    deadline = time.monotonic() + args.settle
    while True:
        now = await metrics(port)
        if (now["chat_stream_clients"] == 0 and now["chat_poll_waiters"] == 0
                and now["process_open_fds"] <= baseline["process_open_fds"] + args.fd_tolerance
                and now["chat_asyncio_tasks"]
                <= baseline["chat_asyncio_tasks"] + args.task_tolerance) \
                or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.5)


def check_deliveries(clients: Sequence[Client], expected: dict[str, list[int]],
                     due: dict[str, int]) -> list[str]:
    """What went wrong with each client's deliveries: nothing, when it saw its room's messages
    after its starting cursor (``expected``, positions from the server's history) each once, in
    order, at least the first ``due`` of them, and never a reset."""
    problems = []
    for c in clients:
        got = c.received.tolist()
        want = expected[c.room][:max(len(got), due[c.room])]
        if got != want:
            seen = Counter(got)
            missing = len(set(want) - set(seen))
            dupes = sum(n - 1 for n in seen.values() if n > 1)
            out_of_order = sum(a >= b for a, b in itertools.pairwise(got))
            problems.append(f"client {c.number} ({c.kind}, {c.room}): {len(got)} received, "
                            f"{len(want)} due, {missing} missing, {dupes} duplicates, "
                            f"{out_of_order} out of order")
        if c.resets:
            problems.append(f"client {c.number} ({c.kind}) was told to reset {c.resets} times")
        for what, n in c.errors.items():
            if what in ("foreign epoch", "data does not match id"):
                problems.append(f"client {c.number}: {n} x {what}")
    return problems


async def soak(args: argparse.Namespace, port: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.3)  # let the server finish starting
    baseline = await metrics(port)
    rooms = [f"soak{i}" for i in range(args.rooms)]
    seeds = {}
    for room in rooms:  # every client starts from a known cursor: the room's first message
        status, body = await request(port, "POST", "/a/message/new", form(room=room, body="seed"))
        assert status == 200, (status, body)
        seeds[room] = json.loads(body)["id"]
    rng = random.Random(args.seed)
    clients = [Client(i, "stream" if rng.random() < args.stream_share else "poll",
                      rooms[i % len(rooms)], seeds[rooms[i % len(rooms)]],
                      seeds[rooms[i % len(rooms)]].rpartition("-")[0],
                      random.Random(args.seed * 100_003 + i)) for i in range(args.clients)]
    runner = Soak(args, port)
    posted: dict[str, list[str]] = {room: [] for room in rooms}
    started = loop.time()
    tasks = []
    for i, client in enumerate(clients):  # start over a second, not in one burst
        tasks.append(asyncio.create_task(runner.run_client(client)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    peak = dict(baseline)
    publisher = asyncio.create_task(publish(port, args, rooms, posted,
                                            lambda: loop.time() < started + args.seconds))
    while not publisher.done():
        await asyncio.wait([publisher], timeout=5)
        sample = await metrics(port)
        for name in GAUGES:
            peak[name] = max(peak[name], sample[name])
        if args.verbose:
            print(f"  t={loop.time() - started:5.0f}s " + " ".join(
                f"{n}={sample[n]:.0f}" for n in GAUGES), flush=True)
    publish_failures = publisher.result()
    runner.final = {room: int((posted[room] or [seeds[room]])[-1].rpartition("-")[2])
                    for room in rooms}
    runner.stopping.set()
    catching_up = True
    waker = asyncio.create_task(publish(port, args, rooms, posted, lambda: catching_up,
                                        interval=0.5))
    _, pending = await asyncio.wait(tasks, timeout=args.catch_up + 30)
    catching_up = False
    publish_failures += await waker
    for task in pending:
        task.cancel()
    ran = loop.time() - started
    after = await settle(port, baseline, args)

    expected, due = {}, {}
    history_problems = []
    for room in rooms:
        held = await history_after(port, room, seeds[room])
        if held != posted[room]:
            first = next((i for i, (a, b) in enumerate(zip(held, posted[room], strict=False))
                          if a != b), min(len(held), len(posted[room])))
            history_problems.append(
                f"{room}: the server holds {len(held)} messages after the seed, "
                f"{len(posted[room])} were posted and acknowledged; they differ from #{first}: "
                f"{held[first:first + 3]} vs {posted[room][first:first + 3]}")
        expected[room] = [int(i.rpartition("-")[2]) for i in held]
        due[room] = sum(p <= runner.final[room] for p in expected[room])
    problems = history_problems + check_deliveries(clients, expected, due)
    if pending:
        problems.append(f"{len(pending)} clients did not catch up within {args.catch_up} s")
    if publish_failures:
        problems.append(f"{publish_failures} posts failed")
    rss_growth = (after["process_resident_memory_bytes"]
                  - baseline["process_resident_memory_bytes"]) / 2**20
    checks = {
        "stream clients back to 0": after["chat_stream_clients"] == 0,
        "poll waiters back to 0": after["chat_poll_waiters"] == 0,
        f"open fds within {args.fd_tolerance} of baseline":
            after["process_open_fds"] <= baseline["process_open_fds"] + args.fd_tolerance,
        f"asyncio tasks within {args.task_tolerance} of baseline":
            after["chat_asyncio_tasks"] <= baseline["chat_asyncio_tasks"] + args.task_tolerance,
        f"RSS growth under {args.max_rss_growth_mb} MB": rss_growth < args.max_rss_growth_mb,
        "every client saw every message it was due, once, in order": not problems,
    }
    errors: Counter[str] = Counter()
    refused: Counter[int] = Counter()
    for c in clients:
        errors.update(c.errors)
        refused.update(c.refused)
    return {
        "clients": args.clients,
        "streams": sum(c.kind == "stream" for c in clients),
        "pollers": sum(c.kind == "poll" for c in clients),
        "rooms": args.rooms, "seconds": round(ran, 1), "rate": args.rate,
        "messages": sum(map(len, posted.values())),
        "sessions": sum(c.sessions for c in clients),
        "abrupt_disconnects": sum(c.abrupt for c in clients),
        "deliveries_checked": sum(len(c.received) for c in clients),
        "refused": dict(refused), "connection_errors": dict(errors),
        "dropped_by_server": {k: v for k, v in after.items()
                              if k.startswith("chat_clients_dropped_total") and v},
        "baseline": {n: baseline[n] for n in GAUGES}, "peak": {n: peak[n] for n in GAUGES},
        "after": {n: after[n] for n in GAUGES},
        "rss_growth_mb": round(rss_growth, 1),
        "checks": checks, "problems": problems[:20],
    }


def raise_fd_limit(clients: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = clients * 2 + 1000  # this process; the server inherits the same limit
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    if min(want, hard) < clients + 100:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} is too low for {clients} clients")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 300)),
                   help="how long messages flow and clients churn (default 300; env SOAK_SECONDS)")
    p.add_argument("--rate", type=float, default=20, help="posts per second (all rooms)")
    p.add_argument("--rooms", type=int, default=10)
    p.add_argument("--stream-share", type=float, default=0.7,
                   help="share of clients that stream; the others long-poll")
    p.add_argument("--min-session", type=float, default=0.5, help="seconds a session lasts, least")
    p.add_argument("--max-session", type=float, default=10.0, help="... and most")
    p.add_argument("--catch-up", type=float, default=60,
                   help="seconds a client may take to catch up after the publisher stops")
    p.add_argument("--settle", type=float, default=20,
                   help="seconds to wait for the gauges to return to their baseline")
    p.add_argument("--fd-tolerance", type=int, default=3)
    p.add_argument("--task-tolerance", type=int, default=3)
    p.add_argument("--max-rss-growth-mb", type=float, default=60)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the summary here")
    p.add_argument("--server-arg", action="append", default=[],
                   help="extra argument for python -m chat (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true", help="print the gauges every 5 s")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit(args.clients)
    with tempfile.TemporaryFile() as log:
        proc, port = start_server(args, log)
        try:
            runner = asyncio.run if sys.platform != "linux" else _run_fast
            summary = runner(soak(args, port))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        text = read_log(log)
    summary["checks"]["server exited 0 on SIGTERM"] = code == 0
    summary["checks"]["no traceback or ERROR in the server log"] = \
        "Traceback" not in text and " ERROR " not in text
    if not summary["checks"]["no traceback or ERROR in the server log"]:
        summary["problems"].append(text[-3000:])
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    failed = [name for name, ok in summary["checks"].items() if not ok]
    print("soak: FAILED: " + "; ".join(failed) if failed else "soak: all checks passed")
    return 1 if failed else 0


def _run_fast(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


if __name__ == "__main__":
    sys.exit(main())
