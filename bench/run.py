"""One benchmark run against a server that is up: connect, publish, wait, measure. Returns a dict.

Timeline of a delivery run (``sse`` or ``poll``; ``idle`` is ``sse`` with no messages):

1. connect S subscribers (at most ``CONNECT_BATCH`` handshakes in flight) and wait until the
   server has every one of them (its own gauge, when it is a single process);
2. publish M messages at R/s on one keep-alive connection, noting when each POST was written;
3. wait until every subscriber has every message, or ``drain`` seconds after the last post.

Server CPU is read from /proc at the edges of phase 1 and of phases 2+3 (the delivery window).

The other kinds:

- ``post``: no subscribers; ``conns`` connections post back to back, as fast as replies come,
  for ``post_seconds``, to one room, round robin over ``rooms`` rooms, or (``rooms`` 0) each post
  to a room of its own; bodies of ``body_chars`` characters of ``body`` text (ascii or astral).
- ``hold``: ``messages`` such posts, then RSS growth per held message (memory per message).
- ``storm``: S SSE clients follow a room while messages keep coming; then all of them reconnect
  with ``Last-Event-ID`` within ``storm_spread`` seconds, to the same server or to a fresh
  process on the same store (a rolling restart); every answer is counted and every client must
  get exactly the messages after its cursor.
"""

from __future__ import annotations

import asyncio
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import procstat
from .accounting import account, percentile
from .clients import (
    HTTPConn,
    Poller,
    Posts,
    SSESubscriber,
    Subscriber,
    make_body,
    message_id,
    perf,
    post_request,
)

CONNECT_BATCH = 200
PUBLISHERS = 256  # publisher connections at most (posts in flight)
HARNESS_BUSY = 0.85  # fraction of one core past which latency measures the harness


KINDS = ("sse", "poll", "idle", "post", "hold", "storm")


@dataclass
class Scenario:
    kind: str  # one of KINDS
    subscribers: int = 1000
    messages: int = 100
    rate: float = 20.0
    drain: float = 120.0  # seconds after the last post to wait for deliveries still coming
    post_seconds: float = 5.0  # length of a "post" run
    conns: int = 4  # publishing connections of a "post" or "hold" run
    body_chars: int = 0  # "post", "hold": characters per body (0: a short default body)
    body: str = "ascii"  # ascii | astral (emoji, 4 bytes of UTF-8 each)
    rooms: int = 1  # "post", "hold": round robin over this many rooms; 0: each post its own room
    storm_after: float = 2.0  # "storm": seconds of messages before every client reconnects
    storm_spread: float = 1.0  # "storm": the reconnects are spread evenly over this many seconds
    storm_to: str = "same"  # "storm": reconnect to the same server, or a "fresh" process
    names: bool = False  # SSE: each subscriber streams with a name of its own (presence lists it)


def _rusage() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Meter:
    """Server CPU (schedstat and stat), harness CPU, machine-wide busy time and wall time together.

    ``pids``: the server's processes (each with its descendants); ``redis``: a redis-server the
    harness started, whose CPU is kept apart (it is not the server's, and not noise either).
    """

    def __init__(self, pids: list[int], redis: int | None = None) -> None:
        self.clocks = [procstat.CpuClock(pid) for pid in pids]
        self.redis = procstat.CpuClock(redis) if redis else None

    def read(self) -> tuple[float, float, float, float, float, float]:
        ns = st = 0.0
        for clock in self.clocks:
            a, b = clock.read()
            ns, st = ns + a, st + b
        rns = self.redis.read()[0] if self.redis else 0.0
        busy, _ = procstat.machine_busy()
        return perf(), ns, st, _rusage(), busy, rns

    @staticmethod
    def delta(a: tuple[float, ...], b: tuple[float, ...]) -> dict[str, float]:
        wall = b[0] - a[0]
        server = b[1] - a[1] if b[1] - a[1] > 0 else b[2] - a[2]
        harness = b[3] - a[3]
        redis = b[5] - a[5]
        return {"wall": wall, "server": server, "server_stat": b[2] - a[2], "harness": harness,
                "redis": redis, "others": max(0.0, (b[4] - a[4]) - server - harness - redis)}


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


async def connect(kind: str, hostport: str, room: str, count: int,
                  timeout: float = 120.0, names: bool = False) -> list[Subscriber]:
    """Open ``count`` subscribers and return once each is ready (SSE: opened; poll: request sent).

    A subscriber answered 503 (or any non-200) counts it and asks again half a second later.
    """
    loop = asyncio.get_running_loop()
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

    cls = SSESubscriber if kind in ("sse", "idle", "storm") else Poller
    for n in range(count):
        await slots.acquire()
        sub = cls(hostport, room, ready)
        if names and isinstance(sub, SSESubscriber):
            sub.name = f"u{n}"
        await sub.open()
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


async def publish(hostport: str, room: str, count: int, rate: float, statuses: Counter[int] | None = None
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
        if statuses is not None:
            statuses[status] += 1
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


def post_requests(hostport: str, scenario: Scenario) -> Iterator[bytes]:
    """Endless posts of the scenario's body: to one room, round robin over ``rooms`` rooms, or
    (``rooms`` 0) each to a room of its own."""
    make = Posts(hostport, make_body(scenario.body_chars, scenario.body))
    tag = secrets.token_hex(4)
    if scenario.rooms <= 0:
        n = 0
        while True:
            n += 1
            yield make(f"r{tag}-{n}")
    requests = [make(f"r{tag}-{k}") for k in range(scenario.rooms)]
    while True:
        yield from requests


async def post_many(hostport: str, conns: int, requests: Iterator[bytes], seconds: float | None = None,
                    count: int | None = None) -> tuple[Counter[int], int, list[float]]:
    """``conns`` connections each posting back to back until ``seconds`` have passed or ``count``
    posts were made: (answers by status, bytes of the first accepted post's JSON, each accepted
    post's latency from writing the request to reading the reply, sorted)."""
    host, port = hostport.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    statuses: Counter[int] = Counter()
    deadline = perf() + seconds if seconds is not None else None
    left = count if count is not None else -1
    size = 0
    latencies: list[float] = []

    async def worker() -> None:
        nonlocal left, size
        _, conn = await loop.create_connection(HTTPConn, host, int(port))
        try:
            while left != 0 and (deadline is None or perf() < deadline):
                left -= 1
                t = perf()
                status, body = await conn.send(next(requests))
                statuses[status] += 1
                if status == 200:
                    latencies.append(perf() - t)
                    if not size:
                        size = len(body)  # the reply is the message's JSON, as held
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(conns)))
    return statuses, size, sorted(latencies)


def _answers(statuses: Counter[int]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(statuses.items())}


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


Target = tuple[str, int | None]  # (host:port, pid) of a server


async def run(scenario: Scenario, hostport: str, pid: int | None,
              profile: Path | None = None, *, redis_pid: int | None = None,
              fresh: Target | None = None) -> dict[str, Any]:
    """Run ``scenario`` against the server at ``hostport`` (process ``pid``); the result fields.

    ``redis_pid``: a redis-server whose CPU is reported apart; ``fresh``: for a storm, the
    second server (same store) the clients move to.
    """
    pids = [p for p in (pid, fresh[1] if fresh else None) if p]
    meter = Meter(pids, redis_pid)

    def rss() -> int:
        return sum(procstat.rss(procstat.tree(p)) for p in pids)

    out: dict[str, Any] = {}
    # Warm up (templates, first-request paths) away from the measured room.
    await publish(hostport, "warmup", 2, 1000.0)
    if fresh:
        await publish(fresh[0], "warmup", 2, 1000.0)
    if scenario.kind == "post":
        return await _post(scenario, hostport, meter, Profiler(pid, profile) if profile else None)
    if scenario.kind == "hold":
        return await _hold(scenario, hostport, rss)

    room = "bench" + secrets.token_hex(4)
    rss0 = rss()
    a = meter.read()
    subs = await connect(scenario.kind, hostport, room, scenario.subscribers,
                         names=scenario.names)
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
        post_statuses: Counter[int] = Counter()
        a = meter.read()
        publishing = asyncio.ensure_future(
            publish(hostport, room, scenario.messages, scenario.rate, post_statuses))
        if scenario.kind == "storm":
            out.update(await _storm(scenario, subs, fresh[0] if fresh else hostport, meter))
        sent, errors = await publishing
        last_post = perf()
        expected = scenario.subscribers * len(sent)
        await _wait_delivered(subs, expected, last_post, scenario.drain)
        d = Meter.delta(a, meter.read())
        profiler.stop()
        acc = account([(s.ids, s.times) for s in subs], sent, len(sent))
        span = acc.last_seen - acc.first_sent
        last = sorted(acc.last_arrival)
        statuses = Counter(status for s in subs for status in s.answers)
        out.update(
            posted=len(sent), post_errors=errors, post_answers=_answers(post_statuses),
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
            # Every answer the subscribers got (the connects included), by HTTP status; and the
            # publisher's 503s (a refused post is not counted as expected, so not as lost).
            answers=_answers(statuses), answers_503=statuses[503], post_503=post_statuses[503],
            answers_non_200=sum(v for k, v in statuses.items() if k != 200) + errors,
        )
        if redis_pid:
            out.update(redis_cpu_s=round(d["redis"], 4),
                       redis_cpu_us_per_delivery=(round(d["redis"] / acc.delivered * 1e6, 2)
                                                  if acc.delivered else None))
        if scenario.kind == "storm":
            out.update(_storm_check(subs, sent))
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


async def _post(scenario: Scenario, hostport: str, meter: Meter,
                profiler: Profiler | None = None) -> dict[str, Any]:
    """Posting only: ``conns`` connections back to back for ``post_seconds`` (profiled with
    ``--profile``: py-spy attached a moment before)."""
    requests = post_requests(hostport, scenario)
    await post_many(hostport, 1, requests, count=20)  # the body's own first-request paths
    if profiler is not None:
        await asyncio.sleep(0.3)  # let py-spy attach
    a = meter.read()
    statuses, size, latencies = await post_many(hostport, scenario.conns, requests,
                                                seconds=scenario.post_seconds)
    d = Meter.delta(a, meter.read())
    if profiler is not None:
        profiler.stop()
    ok = statuses[200]
    return dict(posters=scenario.conns, posts_accepted=ok,
                posts_rejected=sum(statuses.values()) - ok,
                post_answers=_answers(statuses), posts_per_s=round(ok / d["wall"], 1),
                post_p50_ms=_ms(percentile(latencies, 50)),
                post_p99_ms=_ms(percentile(latencies, 99)),
                body_utf8_bytes=len(make_body(scenario.body_chars, scenario.body).encode()),
                message_json_bytes=size,
                server_cpu_us_per_post=round(d["server"] / max(ok, 1) * 1e6, 1),
                server_cpu_frac=round(d["server"] / d["wall"], 3),
                harness_cpu_frac=round(d["harness"] / d["wall"], 3),
                others_cpu=round(d["others"] / d["wall"], 2))


HOLD_WARMUP = 100  # posts of the same body before the baseline: allocator arenas, first paths


async def _hold(scenario: Scenario, hostport: str, rss: Callable[[], int]) -> dict[str, Any]:
    """Memory per held message: RSS before and after ``messages`` posts of the scenario's body.

    The server must hold every one of them (``--history`` at least ``messages`` for one room;
    the harness passes it): the gauge ``chat_history_bytes`` says what it counts as held.
    """
    body = make_body(scenario.body_chars, scenario.body)
    warm = Scenario("hold", 0, body_chars=scenario.body_chars, body=scenario.body, rooms=0)
    await post_many(hostport, scenario.conns, post_requests(hostport, warm), count=HOLD_WARMUP)
    await asyncio.sleep(0.5)
    rss0, held0 = rss(), await _metric(hostport, "chat_history_bytes")
    rooms0 = await _metric(hostport, "chat_rooms")
    statuses, size, _ = await post_many(hostport, scenario.conns, post_requests(hostport, scenario),
                                     count=scenario.messages)
    await asyncio.sleep(0.5)  # nothing runs any more; let the last replies' buffers go
    rss1, held1 = rss(), await _metric(hostport, "chat_history_bytes")
    rooms1 = await _metric(hostport, "chat_rooms")
    ok = statuses[200]
    utf8 = len(body.encode())
    per_message = (rss1 - rss0) / max(ok, 1)
    target = 3 * utf8 + 1024
    return dict(posts_accepted=ok, post_answers=_answers(statuses), body_utf8_bytes=utf8,
                message_json_bytes=size, rss_before_mb=round(rss0 / 2**20, 1),
                rss_after_mb=round(rss1 / 2**20, 1),
                rss_bytes_per_message=round(per_message),
                rss_per_body_utf8=round(per_message / utf8, 2),
                target_bytes_per_message=target, within_target=per_message <= target,
                history_bytes_per_message=(round((held1 - held0) / max(ok, 1))
                                           if held0 is not None and held1 is not None else None),
                rooms_added=(round(rooms1 - rooms0)
                             if rooms0 is not None and rooms1 is not None else None))


async def _storm(scenario: Scenario, subs: list[Subscriber], target: str, meter: Meter
                 ) -> dict[str, Any]:
    """After ``storm_after`` s of messages, every subscriber drops its connection and asks
    ``target`` again with ``Last-Event-ID``, the i-th at ``i / S`` of ``storm_spread`` seconds;
    returns when every one has its stream open again (or 60 s later)."""
    await asyncio.sleep(scenario.storm_after)
    streams = [s for s in subs if isinstance(s, SSESubscriber)]
    before = [len(s.answers) for s in streams]
    reopened = asyncio.Event()
    waiting = len(streams)

    def on_open(sub: SSESubscriber) -> None:
        nonlocal waiting
        if len(sub.opened) == 2:
            waiting -= 1
            if waiting == 0:
                reopened.set()

    for s in streams:
        s.mark = len(s.ids)
        s.opened_cb = on_open
    tcp0 = procstat.tcp_counters()
    a = meter.read()
    start = perf()
    step = scenario.storm_spread / max(len(streams), 1)
    for i, s in enumerate(streams):
        delay = start + i * step - perf()
        if delay > 0.001:
            await asyncio.sleep(delay)
        s.reconnect(target)
    issued = perf() - start
    try:
        await asyncio.wait_for(reopened.wait(), 60.0)
    except TimeoutError:
        pass  # reported: storm_reopened < storm_clients
    d = Meter.delta(a, meter.read())
    tcp1 = procstat.tcp_counters()
    waits = sorted(s.opened[1] - s.asked for s in streams if len(s.opened) >= 2)
    statuses = Counter(x for s, n in zip(streams, before, strict=True) for x in s.answers[n:])
    n = max(len(streams), 1)
    out = dict(storm_clients=len(streams), storm_issued_s=round(issued, 2),
               storm_all_open_s=round(max((s.opened[1] for s in streams if len(s.opened) >= 2),
                                          default=start) - start, 2),
               storm_reopened=len(waits), storm_answers=_answers(statuses),
               storm_200=statuses[200], storm_503=statuses[503],
               storm_open_p50_ms=_ms(percentile(waits, 50)), storm_open_p99_ms=_ms(percentile(waits, 99)),
               storm_open_max_ms=_ms(waits[-1] if waits else None),
               storm_server_cpu_us_per_client=round(d["server"] / n * 1e6, 1),
               storm_server_cpu_frac=round(d["server"] / d["wall"], 3),
               storm_harness_cpu_frac=round(d["harness"] / d["wall"], 3),
               storm_others_cpu=round(d["others"] / d["wall"], 2),
               # Machine-wide (another program's connects count too): the accept queue.
               storm_listen_overflows=tcp1.get("ListenOverflows", 0) - tcp0.get("ListenOverflows", 0),
               storm_syn_retrans=tcp1.get("TCPSynRetrans", 0) - tcp0.get("TCPSynRetrans", 0))
    if meter.redis:
        out["storm_redis_cpu_us_per_client"] = round(d["redis"] / n * 1e6, 1)
    return out


def _storm_check(subs: list[Subscriber], sent: dict[bytes, tuple[int, float]]) -> dict[str, Any]:
    """Did each client get exactly the messages after its cursor: from the one after the last it
    had before the storm, every message once, in order, to the last posted?"""
    gaps = dups = resets = 0
    for s in subs:
        at = s.mark if s.mark >= 0 else len(s.ids)
        cursor = next((sent[x][0] for x in reversed(s.ids[:at]) if x in sent), -1)
        after = [sent[x][0] for x in s.ids[at:] if x in sent]
        want = list(range(cursor + 1, len(sent)))
        if after != want:
            if len(set(after)) != len(after) or any(r <= cursor for r in after):
                dups += 1
            if not set(want) <= set(after):
                gaps += 1
        if isinstance(s, SSESubscriber):
            resets += s.resets
    return dict(storm_clients_with_gap=gaps, storm_clients_with_dup=dups, storm_resets=resets)


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
