"""``python -m bench``: run scenarios against a server the harness starts (or one given by URL).

    python -m bench run sse -S 1000 -M 100 -R 20          # one scenario, printed and appended
    python -m bench matrix --repeat 3 --out FILE          # what `make bench` runs
    python -m bench matrix --set redis --repeat 3         # another set (post, memory, redis, bypass)
    python -m bench report FILE                           # table, plot and README block

Each run prints one table row and appends one JSON line (``--out``). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import procstat, report, server
from .run import KINDS, Scenario, harness_busy, raise_fd_limit, run

ROOT = Path(__file__).resolve().parent.parent
SIZES = (100, 1000, 5000, 10_000)


FLOORS = {  # yardsticks: the same load against the plainest servers (bench/floor*.py)
    "raw asyncio": "{python} -m bench.floor --port {port}",
    "bare aiohttp": "{python} -m bench.floor_aiohttp --port {port}",
}


@dataclass
class Job:
    scenario: Scenario
    loop: str  # the server's event loop
    server_cmd: str | None = None  # None: python -m chat (or --server-cmd)
    store: str | None = None  # None: --store; "redis": a throwaway redis-server for the run


def matrix(loops: list[str], sizes: list[int], floors: bool) -> list[Job]:
    """The scenarios of `make bench`, for each server event loop, plus the yardsticks."""
    out = []
    for loop in loops:
        for kind in ("sse", "poll"):
            out += [Job(Scenario(kind, s, 100, 20.0), loop) for s in sizes]
        out += [Job(Scenario("idle", max(sizes), 0), loop), Job(Scenario("post", 0, 0), loop)]
    if floors:
        for cmd in FLOORS.values():
            out += [Job(Scenario(kind, s, 100, 20.0), "uvloop", cmd)
                    for kind in ("sse", "poll") for s in sizes if s in (1000, 5000)]
    return out


def post_set() -> list[Job]:
    """``make bench-post``: posting with no subscribers, short and 4,096-character bodies."""
    return [Job(Scenario("post", 0, 0, body_chars=chars, body=body, rooms=rooms), "uvloop")
            for chars, body, rooms in ((0, "ascii", 1), (4096, "ascii", 1), (4096, "astral", 1),
                                       (4096, "astral", 0))]


def memory_set() -> list[Job]:
    """``make bench-memory``: RSS per held message, 2,000 messages of 4,096 characters, ASCII and
    astral, one per room and all in one room."""
    return [Job(Scenario("hold", 0, 2000, body_chars=4096, body=body, rooms=rooms), "uvloop")
            for body in ("ascii", "astral") for rooms in (0, 1)]


def redis_set() -> list[Job]:
    """``make bench-redis``: SSE and long-poll at S=1,000 on the memory store and a throwaway
    Redis, and the reconnect storm of 5,000 SSE clients (memory; Redis, same process and a
    fresh one)."""
    out = [Job(Scenario(kind, 1000, 100, 20.0), "uvloop", store=store)
           for store in ("memory", "redis") for kind in ("sse", "poll")]
    out += [Job(Scenario("storm", 5000, 100, 10.0, storm_to=to), "uvloop", store=store)
            for store, to in (("memory", "same"), ("redis", "same"), ("redis", "fresh"))]
    return out


SETS = {"post": post_set, "memory": memory_set, "redis": redis_set}


def _loop_factory() -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def _git() -> str | None:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev or None


def one(job: Job, args: argparse.Namespace, pinned: bool) -> dict[str, Any]:
    scenario, loop = job.scenario, job.loop
    server_cmd = job.server_cmd or args.server_cmd
    store = job.store or args.store
    profile = getattr(args, "profile", None)
    server_args = list(args.server_arg or [])
    if scenario.kind == "hold" and scenario.rooms == 1:  # one room must hold every message
        server_args = [f"--history={max(scenario.messages, 200)}", *server_args]
    result: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "commit": _git(),
        "kind": scenario.kind, "S": scenario.subscribers, "M": scenario.messages, "R": scenario.rate,
        "names": scenario.names,
        "loop": loop if not args.url else "?", "store": store,
        "server": "external" if args.url else (server_cmd or "python -m chat"),
        "server_args": server_args,
        "pinned": pinned, "netdev_max_backlog": procstat.netdev_backlog(),
        "loadavg_before": float(Path("/proc/loadavg").read_text().split()[0]),
    }
    if scenario.kind in ("post", "hold"):
        result.update(body=scenario.body, body_chars=scenario.body_chars, rooms=scenario.rooms,
                      conns=scenario.conns)
    if scenario.kind == "storm":
        result.update(storm_to=scenario.storm_to, storm_after=scenario.storm_after,
                      storm_spread=scenario.storm_spread)
    harness_loop = _loop_factory()
    if args.url:
        hostport = args.url.split("://", 1)[-1].rstrip("/")
        with asyncio.Runner(loop_factory=harness_loop) as runner:
            result.update(runner.run(run(scenario, hostport, args.server_pid, profile)))
        result["machine"] = procstat.machine()
        return result
    with contextlib.ExitStack() as stack:
        redis_pid = None
        if store == "redis":  # a throwaway redis-server for this run only
            redis = stack.enter_context(server.redis_started(pinned))
            store, redis_pid = redis.url, redis.pid
        else:  # sqlite: a new file for this run only
            store = stack.enter_context(server.store_for_run(store))
        if scenario.kind == "storm" and scenario.storm_to == "fresh" and store == "memory":
            raise SystemExit("a storm to a fresh process needs a shared store (--store redis)")

        def start() -> server.Server:
            port = server.free_port()
            cmd = server.command(sys.executable, port, store, loop, server_cmd, server_args)
            return stack.enter_context(server.started(cmd, port, pinned))

        servers = [start()]
        fresh = None
        if scenario.kind == "storm" and scenario.storm_to == "fresh":
            servers.append(start())
            fresh = (servers[1].hostport, servers[1].pid)
        with asyncio.Runner(loop_factory=harness_loop) as runner:
            result.update(runner.run(run(scenario, servers[0].hostport, servers[0].pid, profile,
                                         redis_pid=redis_pid, fresh=fresh)))
    # The servers have stopped: what they logged as WARNING/ERROR (the reason for a 503, say).
    problems = sum((s.warnings for s in servers), Counter[str]())
    if problems:
        result["server_warnings"] = dict(problems.most_common(8))
    result["machine"] = procstat.machine()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "matrix"):
        p = sub.add_parser(name)
        if name == "run":
            p.add_argument("kind", choices=KINDS)
            p.add_argument("-S", "--subscribers", type=int, default=1000)
            p.add_argument("-M", "--messages", type=int, default=100)
            p.add_argument("-R", "--rate", type=float, default=20.0, help="messages per second")
            p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop",
                           help="the server's event loop (the harness uses uvloop when installed)")
            p.add_argument("--profile", type=Path, help="py-spy the server during delivery into this "
                           "file: .svg flamegraph, .txt raw stacks, .json speedscope")
            p.add_argument("--body-chars", type=int, default=0,
                           help="post, hold: characters per message body (0: a short default)")
            p.add_argument("--body", choices=["ascii", "astral"], default="ascii",
                           help="post, hold: ASCII words, or emoji (4 bytes of UTF-8 each)")
            p.add_argument("-c", "--conns", type=int, default=4,
                           help="post, hold: connections posting back to back")
            p.add_argument("--rooms", type=int, default=1,
                           help="post, hold: round robin over this many rooms; 0: every post to a "
                           "room of its own")
            p.add_argument("--seconds", type=float, default=5.0, help="post: how long to post")
            p.add_argument("--storm-after", type=float, default=3.0,
                           help="storm: seconds of messages before every client reconnects")
            p.add_argument("--storm-spread", type=float, default=1.0,
                           help="storm: the reconnects are spread over this many seconds")
            p.add_argument("--names", action="store_true",
                           help="sse: each subscriber streams with a name of its own, so presence "
                           "lists every one (its cost on the fan-out path)")
            p.add_argument("--storm-to", choices=["same", "fresh"], default="same",
                           help="storm: reconnect to the same server, or to a second process on "
                           "the same store started for the run (a rolling restart; Redis only)")
        else:
            p.add_argument("--set", choices=["default", *SETS], default="default",
                           help="which scenarios: `make bench`'s matrix (default), or post, "
                           "memory, redis, bypass (bench/README.md)")
            p.add_argument("--loops", default="uvloop,asyncio", help="server event loops to run")
            p.add_argument("--sizes", default=",".join(map(str, SIZES)),
                           help="subscriber counts S (the idle run uses the largest)")
            p.add_argument("--no-floors", action="store_true",
                           help="skip the yardstick servers (bench/floor.py, bench/floor_aiohttp.py)")
        p.add_argument("--repeat", type=int, default=1, help="runs of each scenario (interleaved)")
        p.add_argument("--out", type=Path, help="append JSON lines here")
        p.add_argument("--url", help="use this running server (e.g. http://127.0.0.1:8888)")
        p.add_argument("--server-pid", type=int, help="with --url: its pid, for CPU and RSS")
        p.add_argument("--store", default="memory",
                       help="server store: memory, redis (a throwaway redis-server per run, on "
                       "the harness's core), redis://... (one you run), or sqlite (a new file "
                       "in a temporary directory per run) or sqlite:///PATH")
        p.add_argument("--server-cmd", help="server command template with {python} {port} {store}, "
                       "e.g. gunicorn with several workers; CPU and RSS sum its process tree")
        p.add_argument("--server-arg", action="append", default=[],
                       help="extra argument for python -m chat (repeatable)")
        p.add_argument("--no-sysctl", action="store_true",
                       help="never raise net.core.netdev_max_backlog, only warn")
        p.add_argument("--drain", type=float, default=120.0,
                       help="at most this long after the last post for deliveries still coming "
                       "(a run also ends when nothing arrived for 5 s)")
        p.add_argument("--quiet", type=float, default=0.0, metavar="SECONDS",
                       help="before each run, wait up to this long for the machine's other load "
                       "to drop below 0.25 cores (0: do not wait)")
    p = sub.add_parser("report")
    p.add_argument("results", type=Path)
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "bench.png")
    p.add_argument("--table", type=Path, default=ROOT / "bench" / "results" / "table.md")
    p.add_argument("--readme", type=Path, default=ROOT / "docs" / "performance.md")
    p.add_argument("--table-only", action="store_true",
                   help="write only --table (no plot, README untouched): for the other sets")
    args = parser.parse_args(argv)

    if args.command == "report":
        if args.table_only:
            report.main(args.results, None, args.table, None)
        else:
            report.main(args.results, args.plot, args.table, args.readme)
        return
    if args.command == "run":
        subscribers = 0 if args.kind in ("post", "hold") else args.subscribers
        messages = args.messages if args.kind in ("sse", "poll", "hold", "storm") else 0
        plan = [Job(Scenario(args.kind, subscribers, messages, args.rate, args.drain,
                             post_seconds=args.seconds, conns=args.conns, body_chars=args.body_chars,
                             body=args.body, rooms=args.rooms, storm_after=args.storm_after,
                             storm_spread=args.storm_spread, storm_to=args.storm_to,
                             names=args.names), args.loop)]
    else:
        if args.set == "default":
            plan = matrix(args.loops.split(","), [int(x) for x in args.sizes.split(",")],
                          not args.no_floors)
        else:
            plan = SETS[args.set]()
        for job in plan:
            job.scenario.drain = args.drain
    # A storm holds each client's old and new connection for a moment.
    raise_fd_limit(max(job.scenario.subscribers * (2 if job.scenario.kind == "storm" else 1)
                       for job in plan) + 1024)
    pinned = not args.url and server.pin_harness()
    old, note = procstat.raise_netdev_backlog(not args.no_sysctl)
    if note:
        print(note, file=sys.stderr)
    if not pinned:
        print("note: fewer than 2 cores (or --url): server and harness are not pinned", file=sys.stderr)
    started = time.monotonic()
    print(report.HEADER)
    try:
        for _ in range(args.repeat):
            for job in plan:
                if not args.no_sysctl:  # another harness on the machine may have put it back
                    procstat.reraise_netdev_backlog()
                if args.quiet:
                    busy = procstat.wait_quiet(0.25, args.quiet)
                    if busy >= 0.25:
                        print(f"note: the machine stayed busy ({busy:.2f} cores) for {args.quiet:g} s; "
                              "running anyway", file=sys.stderr)
                result = one(job, args, pinned)
                print(report.row(result), flush=True)
                warning = harness_busy(result)
                if warning:
                    print(warning, file=sys.stderr)
                if args.out:
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    with args.out.open("a") as f:
                        f.write(json.dumps(result) + "\n")
    finally:
        procstat.restore_netdev_backlog(old)
    print(f"{len(plan) * args.repeat} runs in {time.monotonic() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
