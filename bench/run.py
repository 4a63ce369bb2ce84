"""One benchmark run against a server that is up: connect, publish, wait, measure. Returns a dict.

Timeline of a delivery run (``sse`` or ``poll``; ``idle`` is ``sse`` with no messages):

1. connect S subscribers (at most ``CONNECT_BATCH`` handshakes in flight) and wait until the
   server has every one of them (its own gauge, when it is a single process);
2. publish M messages at R/s on one keep-alive connection, noting when each POST was written;
3. wait until every subscriber has every message, or ``drain`` seconds after the last post.

Server CPU is read from /proc at the edges of phase 1 and of phases 2+3 (the delivery window).
``post`` runs no subscribers: ``conns`` connections post back to back, as fast as replies come.
"""

from __future__ import annotations

import asyncio
import functools
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import procstat
from .accounting import account, percentile
from .clients import HTTPConn, Poller, SSESubscriber, Subscriber, message_id, perf, post_request

CONNECT_BATCH = 200
PUBLISHERS = 256  # publisher connections at most (posts in flight)
HARNESS_BUSY = 0.85  # fraction of one core past which latency measures the harness


@dataclass
class Scenario:
    kind: str  # sse | poll | idle | post
    subscribers: int = 1000
    messages: int = 100
    rate: float = 20.0
    drain: float = 120.0  # seconds after the last post to wait for deliveries still coming
    post_seconds: float = 5.0  # length of a "post" run
    conns: int = 4  # publishing connections of a "post" run


def _rusage() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Meter:
    """Server CPU (schedstat and stat), harness CPU, machine-wide busy time and wall time together."""

    def __init__(self, pid: int | None) -> None:
        self.clock = procstat.CpuClock(pid) if pid else None

    def read(self) -> tuple[float, float, float, float, float]:
        ns, st = self.clock.read() if self.clock else (0.0, 0.0)
        busy, _ = procstat.machine_busy()
        return perf(), ns, st, _rusage(), busy

    @staticmethod
    def delta(a: tuple[float, ...], b: tuple[float, ...]) -> dict[str, float]:
        wall = b[0] - a[0]
        server = b[1] - a[1] if b[1] - a[1] > 0 else b[2] - a[2]
        harness = b[3] - a[3]
        return {"wall": wall, "server": server, "server_stat": b[2] - a[2], "harness": harness,
                "others": max(0.0, (b[4] - a[4]) - server - harness)}


async def _metric(hostport: str, name: str) -> float | None:
    host, port = hostport.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(HTTPConn, host, int(port))
    try:
        _status, body = await conn.send(f"GET /metrics HTTP/1.1\r\nHost: {hostport}\r\n\r\n".encode())
    finally:
        conn.close()
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _same(protocol: asyncio.Protocol) -> asyncio.Protocol:
    """A protocol factory that returns the one protocol made already."""
    return protocol


async def connect(kind: str, hostport: str, room: str, count: int,
                  timeout: float = 120.0) -> list[Subscriber]:
    """Open ``count`` subscribers and return once each is ready (SSE: opened; poll: request sent)."""
    loop = asyncio.get_running_loop()
    host, port = hostport.rsplit(":", 1)
    slots = asyncio.Semaphore(CONNECT_BATCH)
    all_ready = loop.create_future()
    subs: list[Subscriber] = []
    pending = count

    def ready(sub: Subscriber) -> None:
        nonlocal pending
        slots.release()
        pending -= 1
        if pending == 0 and not all_ready.done():
            all_ready.set_result(None)

    cls = SSESubscriber if kind in ("sse", "idle") else Poller
    for _ in range(count):
        await slots.acquire()
        sub = cls(hostport, room, ready)
        for attempt in range(5):
            try:
                await loop.create_connection(functools.partial(_same, sub), host, int(port))
                break
            except OSError:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.1 * 2**attempt)
        subs.append(sub)
    if count:
        await asyncio.wait_for(all_ready, timeout)
    failed = [s.error for s in subs if s.error]
    if failed:
        raise RuntimeError(f"{len(failed)} subscribers failed, e.g. {failed[0]}")
    return subs


async def server_has(hostport: str, kind: str, count: int, timeout: float = 60.0) -> bool:
    """Wait until the server's own gauge counts every subscriber; False if it has no such gauge."""
    name = "chat_poll_waiters" if kind == "poll" else "chat_stream_clients"
    deadline = time.monotonic() + timeout
    while True:
        value = await _metric(hostport, name)
        if value is None:
            return False
        if value >= count:
            return True
        if time.monotonic() > deadline:
            raise RuntimeError(f"server reports {name}={value}, expected {count}")
        await asyncio.sleep(0.05)


async def publish(hostport: str, room: str, count: int, rate: float
                  ) -> tuple[dict[bytes, tuple[int, float]], int]:
    """Post ``count`` messages at ``rate``/s on a schedule; id -> (acceptance rank, send time).

    Open loop: the i-th post is written at ``start + i/rate`` on an idle keep-alive connection, or
    a new one when all are waiting for replies (at most ``PUBLISHERS``), so a server that falls
    behind still gets the load it was offered and shows it as latency, not as a slower publisher.
    """
    host, port = hostport.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    idle: list[HTTPConn] = []
    opened: list[HTTPConn] = []
    slots = asyncio.Semaphore(PUBLISHERS)
    times: dict[bytes, float] = {}
    errors = 0

    async def post(request: bytes) -> None:
        nonlocal errors
        async with slots:
            if idle:
                conn = idle.pop()
            else:
                _, conn = await loop.create_connection(HTTPConn, host, int(port))
                opened.append(conn)
            t = perf()
            status, body = await conn.send(request)
            idle.append(conn)
        if status == 200:
            times[message_id(body)] = t
        else:
            errors += 1

    requests = [post_request(hostport, room, f"bench message {i}") for i in range(count)]
    tasks = []
    start = perf()
    try:
        for i, request in enumerate(requests):
            delay = start + i / rate - perf()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(request)))
        await asyncio.gather(*tasks)
    finally:
        for conn in opened:
            conn.close()
    # Posts in flight together may be accepted in either order: rank by the server's ids.
    ranked = sorted(times, key=_id_order)
    return {key: (rank, times[key]) for rank, key in enumerate(ranked)}, errors


def _id_order(key: bytes) -> tuple[int, ...]:
    """Ids are opaque to clients; ours end in numbers that increase within a room."""
    return tuple(int(part) for part in key.split(b"-")[1:] if part.isdigit())


async def post_flood(hostport: str, seconds: float, conns: int) -> tuple[int, int, list[float]]:
    """``conns`` connections each posting back to back for ``seconds``: (accepted, rejected,
    each accepted post's latency from writing the request to reading the reply, sorted)."""
    host, port = hostport.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    ok = bad = 0
    latencies: list[float] = []
    room = "flood" + secrets.token_hex(4)
    request = post_request(hostport, room, "flood message")
    deadline = perf() + seconds

    async def worker() -> None:
        nonlocal ok, bad
        _, conn = await loop.create_connection(HTTPConn, host, int(port))
        try:
            while perf() < deadline:
                t = perf()
                status, _ = await conn.send(request)
                if status == 200:
                    ok += 1
                    latencies.append(perf() - t)
                else:
                    bad += 1
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(conns)))
    return ok, bad, sorted(latencies)


async def _wait_delivered(subs: list[Subscriber], expected: int, last_post: float,
                          drain: float, quiet: float = 5.0) -> None:
    """Until every delivery is in; or nothing more arrived for ``quiet`` s after the last post
    (what is missing then is lost); or ``drain`` s after the last post (a server far behind)."""
    seen, since = -1, perf()
    while perf() < last_post + drain:
        got = sum(len(s.ids) for s in subs)
        if got >= expected:
            return
        now = perf()
        if got != seen:
            seen, since = got, now
        elif now - max(since, last_post) >= quiet:
            return
        await asyncio.sleep(0.02)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


class Profiler:
    """py-spy sampling the server during the delivery window (flamegraph .svg, or raw .txt stacks)."""

    def __init__(self, pid: int | None, path: Path | None) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        if path is None:
            return
        if pid is None:
            raise SystemExit("--profile needs the server's pid")
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        fmt = {".svg": "flamegraph", ".txt": "raw", ".json": "speedscope"}.get(path.suffix, "flamegraph")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", "250", "--nonblocking",
                                      "--format", fmt, "--output", str(path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            _, err = self.proc.communicate(timeout=60)
            if self.proc.returncode:
                print(err.decode(errors="replace"), file=sys.stderr)


async def run(scenario: Scenario, hostport: str, pid: int | None,
              profile: Path | None = None) -> dict[str, Any]:
    """Run ``scenario`` against the server at ``hostport`` (process ``pid``); the result fields."""
    meter = Meter(pid)
    def rss() -> int:
        return procstat.rss(procstat.tree(pid)) if pid else 0

    out: dict[str, Any] = {}
    # Warm up (templates, first-request paths) away from the measured room.
    await publish(hostport, "warmup", 2, 1000.0)
    if scenario.kind == "post":
        a = meter.read()
        ok, bad, latencies = await post_flood(hostport, scenario.post_seconds, scenario.conns)
        d = Meter.delta(a, meter.read())
        out.update(posters=scenario.conns, posts_accepted=ok, posts_rejected=bad,
                   posts_per_s=round(ok / d["wall"], 1),
                   post_p50_ms=_ms(percentile(latencies, 50)),
                   post_p99_ms=_ms(percentile(latencies, 99)),
                   server_cpu_us_per_post=round(d["server"] / max(ok, 1) * 1e6, 1),
                   server_cpu_frac=round(d["server"] / d["wall"], 3),
                   harness_cpu_frac=round(d["harness"] / d["wall"], 3),
                   others_cpu=round(d["others"] / d["wall"], 2))
        return out

    room = "bench" + secrets.token_hex(4)
    rss0 = rss()
    a = meter.read()
    subs = await connect(scenario.kind, hostport, room, scenario.subscribers)
    # One process: its own gauge says when it has every subscriber. Several (gunicorn) or none
    # known: each counts only its own, so give the last handshakes a moment instead.
    single = pid is None or len(procstat.tree(pid)) == 1
    gauge = await server_has(hostport, scenario.kind, scenario.subscribers) if single else False
    if not gauge:
        await asyncio.sleep(1.0)  # several workers or no gauge: give the last handshakes time
    d = Meter.delta(a, meter.read())
    rss1 = rss()
    n = max(scenario.subscribers, 1)
    out.update(connect_s=round(d["wall"], 2),
               server_cpu_us_per_connect=round(d["server"] / n * 1e6, 1),
               server_rss_mb=round(rss1 / 2**20, 1),
               server_rss_kb_per_client=round((rss1 - rss0) / 1024 / n, 2) if pid else None)
    try:
        if scenario.kind == "idle":
            return out
        profiler = Profiler(pid, profile)
        await asyncio.sleep(0.3 if profile else 0)  # let py-spy attach
        a = meter.read()
        sent, errors = await publish(hostport, room, scenario.messages, scenario.rate)
        last_post = perf()
        expected = scenario.subscribers * len(sent)
        await _wait_delivered(subs, expected, last_post, scenario.drain)
        d = Meter.delta(a, meter.read())
        profiler.stop()
        acc = account([(s.ids, s.times) for s in subs], sent, len(sent))
        span = acc.last_seen - acc.first_sent
        last = sorted(acc.last_arrival)
        out.update(
            posted=len(sent), post_errors=errors,
            post_rate=(round((len(sent) - 1) / (max(t for _, t in sent.values()) - acc.first_sent), 1)
                       if len(sent) > 1 else None),
            expected=acc.expected, delivered=acc.delivered, lost=acc.lost,
            duplicates=acc.duplicates, out_of_order=acc.out_of_order, unknown_ids=acc.unknown,
            lat_p50_ms=_ms(percentile(acc.latencies, 50)), lat_p99_ms=_ms(percentile(acc.latencies, 99)),
            lat_max_ms=_ms(acc.latencies[-1] if acc.latencies else None),
            last_sub_p50_ms=_ms(percentile(last, 50)), last_sub_max_ms=_ms(last[-1] if last else None),
            deliveries_per_s=round(acc.delivered / span) if span > 0 else None,
            server_cpu_s=round(d["server"], 4), server_cpu_stat_s=round(d["server_stat"], 2),
            server_cpu_us_per_delivery=(round(d["server"] / acc.delivered * 1e6, 2)
                                        if acc.delivered else None),
            server_cpu_frac=round(d["server"] / d["wall"], 3),
            harness_cpu_frac=round(d["harness"] / d["wall"], 3),
            others_cpu=round(d["others"] / d["wall"], 2),
            still_connected=sum(not s.lost for s in subs),
        )
        if scenario.kind == "poll":
            polls = [s for s in subs if isinstance(s, Poller)]
            made = sum(p.polls for p in polls)
            answers = made - len(polls)  # each poller's last request is still waiting
            out.update(polls=made, poll_timeouts=sum(p.timeouts for p in polls),
                       poll_resets=sum(p.resets for p in polls),
                       messages_per_answer=round(acc.delivered / answers, 2) if answers > 0 else None,
                       server_cpu_us_per_answer=(round(d["server"] / answers * 1e6, 1)
                                                 if answers > 0 else None))
    finally:
        for s in subs:
            s.close()
    return out


def raise_fd_limit(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, need)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < need:
        raise SystemExit(f"need {need} file descriptors, the hard limit is {hard}: raise it (ulimit -Hn)")
    return want


def harness_busy(result: dict[str, Any]) -> str | None:
    frac = result.get("harness_cpu_frac")
    if frac is not None and frac >= HARNESS_BUSY:
        return (f"WARNING: the harness used {frac:.0%} of a core: latency measures the harness too "
                f"(pid {os.getpid()})")
    return None
