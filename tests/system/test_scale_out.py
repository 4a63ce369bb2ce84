"""Several real server processes on one real Redis: ``python -m chat --store redis://...``
subprocesses on free ports (and gunicorn workers), driven over HTTP like any client. The abuse
limits are off (NO_LIMITS): the posters here are far faster than people."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from chat.stores.redis.scripts import stream_key

from ..support import (
    NO_LIMITS,
    TEST_SECRET,
    Chat,
    ServerProcess,
    chat_on,
    free_port,
    run_chat,
    until,
    zero_cursor,
)
from ..support.servers import RedisServer

pytestmark = pytest.mark.redis

OPENING = b"retry: 1000\n: stream open\n\n"
FAST = ("--redis-timeout", "0.5", "--redis-backoff", "0.2")


def start(processes: list[ServerProcess], *args: str) -> ServerProcess:
    process = ServerProcess(*NO_LIMITS, *args)
    processes.append(process)
    return process.start()


async def test_two_processes_one_redis_share_rooms_and_resume(
        redis_url: str, processes: list[ServerProcess]) -> None:
    a = start(processes, "--store", redis_url)
    b = start(processes, "--store", redis_url)
    async with chat_on(a) as on_a, chat_on(b) as on_b:
        async with on_b.stream(room="r") as s:
            await s.read_bytes(len(OPENING))
            posted = [(await (on_a if i % 2 else on_b).post(f"m{i}", room="r"))["id"]
                      for i in range(20)]
            assert [m["id"] for m in await s.messages(20)] == posted
        # The client got posted[-1] from B; more is said while it is away; it comes back on A.
        missed = [(await (on_a if i % 2 else on_b).post(f"n{i}", room="r"))["id"]
                  for i in range(6)]
        async with on_a.stream(room="r", headers={"Last-Event-ID": posted[-1]}) as s:
            await s.read_bytes(len(OPENING))
            assert [m["id"] for m in await s.messages(6)] == missed
            live = await on_b.post("live", room="r")
            assert (await s.read_event())["id"] == live["id"]  # nothing else came in between
        async with on_a.stream(room="r", last_event_id=posted[9]) as s:  # from further back
            await s.read_bytes(len(OPENING))
            events = [await s.read_event() for _ in range(17)]
            assert [e["id"] for e in events] == posted[10:] + missed + [live["id"]]


async def test_kill_9_under_load_loses_and_repeats_nothing_that_got_200(
        redis_server: RedisServer, redis_url: str,
        processes: list[ServerProcess]) -> None:
    """Posters hammer A and B; A is killed with SIGKILL. Every message that got a 200 is in
    the history, and B's subscriber receives exactly the history, once each, in order."""
    keep = ("--store", redis_url, "--history", "100000")
    a = start(processes, *keep)
    b = start(processes, *keep)
    accepted: dict[str, list[str]] = {"a": [], "b": []}
    stop = asyncio.Event()

    async def poster(chat: Chat, name: str) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                response = await chat.post_raw(f"{name} {i}", room="load")
            except aiohttp.ClientError:
                return  # its server is gone
            assert response.status == 200, await response.text()
            accepted[name].append((await response.json())["id"])

    async with chat_on(a) as on_a, chat_on(b) as on_b, chat_on(b) as watch:
        async with watch.stream(room="load", last_event_id="earliest") as s:
            await s.read_bytes(len(OPENING))
            posters = [asyncio.create_task(poster(c, n))
                       for _ in range(3) for c, n in ((on_a, "a"), (on_b, "b"))]
            # Under steady load on both (not a time: what was accepted), kill A; B goes on.
            await until(lambda: min(map(len, accepted.values())) > 20, True, 20)
            a.stop(signal.SIGKILL)
            b_at_kill = len(accepted["b"])
            await until(lambda: len(accepted["b"]) > b_at_kill + 20, True, 20)
            stop.set()
            await asyncio.gather(*posters)
            last = await on_b.post("last", room="load")
            received: list[str] = []
            while not received or received[-1] != last["id"]:
                received.extend(m["id"] for m in await s.messages(1, timeout=10))
    with redis_server.client() as r:
        history = [f"{f[b'e'].decode()}-{i.decode().split('-')[1]}"
                   for i, f in r.xrange(stream_key("load"))]
    assert len(accepted["a"]) > 20 and len(accepted["b"]) > b_at_kill + 20, "no steady load"
    assert set(accepted["a"] + accepted["b"]) <= set(history)
    assert received == history  # each once, in the order Redis accepted them


async def test_redis_stopped_and_restarted(processes: list[ServerProcess]) -> None:
    """503s while Redis is down, no crash; the open stream resumes afterwards. This Redis keeps
    nothing (no persistence), so the history starts over: old cursors reset."""
    server = RedisServer().start()
    try:
        a = start(processes, "--store", server.url, *FAST)
        async with chat_on(a) as chat, chat.stream(room="r", last_event_id="earliest") as s:
            await s.read_bytes(len(OPENING))
            before = await chat.post("before", room="r")
            assert (await s.read_event())["id"] == before["id"]

            server.stop()
            response = await chat.post_raw("while down", room="r")
            assert response.status == 503
            assert response.content_type == "application/json"
            assert (await chat.client.get("/healthz")).status == 503
            assert (await chat.client.get("/")).status == 503
            assert (await chat.client.get("/a/message/stream")).status == 503
            assert a.running

            server.start(port=server.port)
            await until(lambda: _status(chat, "/healthz"), 200, 10)
            after = await chat.post("after", room="r")
            assert after["id"].split("-")[0] != before["id"].split("-")[0]  # a new history
            assert (await s.read_event(timeout=10))["id"] == after["id"]  # the stream went on

        async with chat_on(a) as chat, chat.stream(room="r", last_event_id=before["id"]) as s:
            await s.read_bytes(len(OPENING))
            assert await s.read_event() == {"id": zero_cursor(after["id"]), "event": "reset",
                                            "data": json.dumps({"reason": "epoch"})}
            assert (await s.read_event())["id"] == after["id"]
    finally:
        server.close()


def test_unreachable_redis_at_startup_is_one_line_and_exit_1() -> None:
    done = run_chat("--port", "0", "--store", f"redis://127.0.0.1:{free_port()}/0",
                    "--redis-timeout", "0.5")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "ERROR chat: cannot reach Redis at redis://127.0.0.1:" in done.stderr.splitlines()[-1]


def test_memory_store_refuses_more_than_one_worker() -> None:
    done = run_chat("--workers", "2")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "--workers 2 needs a shared store" in done.stderr


def test_gunicorn_refuses_more_than_one_worker_on_the_memory_store(tmp_path: Path) -> None:
    gunicorn = Path(sys.executable).parent / "gunicorn"
    done = subprocess.run(
        [str(gunicorn), "-c", "python:chat.gunicorn_conf", "-w", "2", "-b", "127.0.0.1:0",
         "chat.gunicorn_conf:app_factory"], capture_output=True, text=True, timeout=30, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"})
    assert done.returncode != 0
    assert "--workers 2 needs a shared store" in done.stderr


async def test_two_gunicorn_workers_on_redis(redis_url: str,
                                             processes: list[ServerProcess]) -> None:
    server = start(processes, "--store", redis_url, "--workers", "2", "--backlog", "77")
    assert server.proc is not None
    # The master listens before the workers boot.
    await until(lambda: len(_children(server.proc.pid)), 2, 10)  # type: ignore[union-attr]
    # aiohttp's worker listens again with 128 as it boots; ours puts --backlog back.
    await until(lambda: server.output().count("Worker serving, backlog 77 (pid: "), 2)
    assert await _backlog(server.port) == 77
    workers = _children(server.proc.pid)
    # Each worker is a whole server: many streams (spread over both by the kernel) all get
    # every message, whichever worker accepted it.
    async with contextlib.AsyncExitStack() as stack:
        chats = [await stack.enter_async_context(chat_on(server)) for _ in range(8)]
        streams = [await stack.enter_async_context(c.stream(room="g")) for c in chats]
        for s in streams:
            await s.read_bytes(len(OPENING))
        posted = [(await chats[i % 8].post(f"m{i}", room="g"))["id"] for i in range(16)]
        for s in streams:
            assert [m["id"] for m in await s.messages(16)] == posted
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0  # a clean stop
    await until(lambda: _alive(workers), [], 5)  # and its workers with it
    assert "Using worker: chat.gunicorn_worker.UVLoopWorker" in server.output()


def _alive(pids: list[int]) -> list[int]:
    """The processes of ``pids`` still running (an exited one not yet reaped does not count)."""
    alive = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive.append(pid)
    return alive


async def _status(chat: Chat, path: str) -> int:
    return (await chat.client.get(path)).status


async def _backlog(port: int) -> int:
    """The backlog of the socket listening on ``port``: its Send-Q in ``ss -ltn``."""
    done = await asyncio.to_thread(subprocess.run, ["ss", "-ltnH", f"sport = :{port}"],
                                   capture_output=True, text=True, check=True)
    return int(done.stdout.split()[2])


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


async def test_gunicorn_itself_starts_workers_the_way_python_m_chat_does(
        redis_url: str, tmp_path: Path) -> None:
    """Raw gunicorn with chat.gunicorn_conf: settings from CHAT_* (the backlog too), and the
    same logging, where a client's malformed request is one INFO line, not a traceback."""
    gunicorn = Path(sys.executable).parent / "gunicorn"
    log = tmp_path / "gunicorn.log"
    env = {**os.environ, "CHAT_STORE": redis_url, "CHAT_BACKLOG": "77", "CHAT_SECRET": TEST_SECRET}
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(gunicorn), "-c", "python:chat.gunicorn_conf", "-w", "2", "-b", "127.0.0.1:0",
            "chat.gunicorn_conf:app_factory", stdout=out, stderr=subprocess.STDOUT, env=env,
            cwd=tmp_path)
    try:
        def listening() -> int:
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log.read_text())
            return int(found.group(1)) if found else 0

        await until(lambda: _async(listening() != 0 and len(_children(proc.pid)) == 2), True)
        port = listening()
        await until(lambda: log.read_text().count("Worker serving, backlog 77 (pid: "), 2)
        assert await _backlog(port) == 77
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.0 400 ")
        writer.close()
        await until(lambda: _async("bad request: 400" in log.read_text()), True)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        text = log.read_text()
        assert "Traceback" not in text and " ERROR " not in text, text
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _async(value: bool) -> bool:
    return value
