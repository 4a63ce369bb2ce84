"""The SQLite store as its users run it: real ``python -m chat --store sqlite:///...`` processes on
a real file, killed, restarted, shared, filled, corrupted. The abuse limits are off (NO_LIMITS):
the posters here are far faster than people."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ..support import (
    NO_LIMITS,
    XSRF,
    Chat,
    ServerProcess,
    chat_on,
    run_chat,
    sqlite_url,
    until,
    zero_cursor,
)

OPENING = b"retry: 1000\n: stream open\n\n"


def start(processes: list[ServerProcess], db: Path, *args: str) -> ServerProcess:
    process = ServerProcess(*NO_LIMITS, "--store", sqlite_url(db), *args)
    processes.append(process)
    return process.start()


async def everything(chat: Chat, room: str = "main") -> list[dict[str, Any]]:
    """Every message the server keeps in ``room``, oldest first, by scrolling back."""
    pages: list[list[dict[str, Any]]] = []
    query = {"room": room, "limit": "200"}
    while True:
        response = await chat.client.get("/a/message/history", params=query)
        assert response.status == 200, await response.text()
        page = await response.json()
        assert "reset" not in page
        pages.append(page["messages"])
        if not page["more"]:
            return [m for p in reversed(pages) for m in p]
        query["before"] = page["messages"][0]["id"]


async def poll_all(chat: Chat, cursor: str, room: str = "main") -> list[dict[str, Any]]:
    """Long-poll from ``cursor`` until nothing more is there (a short --poll-timeout)."""
    out: list[dict[str, Any]] = []
    while True:
        reply = await chat.poll(cursor=cursor, room=room)
        if not reply:
            return out
        assert "reset" not in reply, reply
        out += reply["messages"]
        cursor = out[-1]["id"]


# ---- kill -9 and clean restarts -----------------------------------------------------------------

async def test_kill_9_under_16_posters_loses_no_acknowledged_message(
        tmp_path: Path, processes: list[ServerProcess]) -> None:
    db = tmp_path / "chat.db"
    server = start(processes, db, "--poll-timeout", "0.5")
    acked: dict[int, list[dict[str, Any]]] = {k: [] for k in range(16)}
    streamed: list[str] = []

    async def poster(k: int) -> None:
        async with aiohttp.ClientSession(cookies={"_xsrf": XSRF}) as session:
            for i in range(100_000):
                try:
                    async with session.post(server.url + "/a/message/new",
                                            data={"_xsrf": XSRF, "body": f"p{k}-{i}"}) as r:
                        if r.status != 200:
                            return
                        acked[k].append(await r.json())
                except aiohttp.ClientError:
                    return

    async with chat_on(server) as chat, chat.stream() as live:
        await live.read_bytes(len(OPENING))
        posters = [asyncio.create_task(poster(k)) for k in range(16)]

        async def listen() -> None:
            with contextlib.suppress(EOFError, aiohttp.ClientError, TimeoutError):
                while True:
                    event = await live.read_event()
                    streamed.append(event["id"])

        async def enough() -> bool:
            return sum(map(len, acked.values())) >= 1500

        listener = asyncio.create_task(listen())
        await until(enough, True, 30)
        server.stop(signal.SIGKILL)
        await asyncio.gather(*posters)
        await listener
    assert server.proc is not None and server.proc.returncode == -signal.SIGKILL
    assert len(streamed) > 10, "the stream got too little before the kill to resume from it"

    restarted = start(processes, db, "--poll-timeout", "0.5")
    async with chat_on(restarted) as chat:
        kept = await everything(chat)
        ids = [m["id"] for m in kept]
        assert len(set(ids)) == len(ids) and [int(i.split("-")[1]) for i in ids] == list(
            range(1, len(ids) + 1)), "the kept history is not one gapless run"
        by_id = {m["id"]: m for m in kept}
        for k, replies in acked.items():
            assert [by_id.get(m["id"]) for m in replies] == replies, f"poster {k} lost a message"
            bodies = [m["body"] for m in kept if m["body"].startswith(f"p{k}-")]
            assert bodies[:len(replies)] == [m["body"] for m in replies]  # in its order, once
            assert len(bodies) <= len(replies) + 1  # at most the post the kill interrupted
        # A cursor of before the kill resumes with exactly the rest, on both transports.
        cursor = streamed[-1]
        rest = ids[ids.index(cursor) + 1:]
        async with chat.stream(last_event_id=cursor) as resumed:
            await resumed.read_bytes(len(OPENING))
            assert [m["id"] for m in await resumed.messages(len(rest))] == rest
            after = await chat.post("after the restart")
            event = await resumed.read_event()
            assert (event["event"], json.loads(event["data"])) == ("message", after)
        middle = ids[len(ids) // 3]
        assert [m["id"] for m in await poll_all(chat, middle)] == [
            *ids[len(ids) // 3 + 1:], after["id"]]


@pytest.mark.parametrize("sync", ["full", "normal"])
async def test_a_clean_restart_keeps_every_cursor(tmp_path: Path, processes: list[ServerProcess],
                                                 sync: str) -> None:
    db = tmp_path / "chat.db"
    server = start(processes, db, "--sqlite-sync", sync, "--poll-timeout", "0.5")
    async with chat_on(server) as chat:
        before = [await chat.post(f"m{i}", client_key=f"key-{i}") for i in range(5)]
        empty = (await chat.client.get("/a/message/history", params={"room": "quiet"}))
        assert (await empty.json())["messages"] == []
        quiet_base = (await chat.poll(room="quiet", cursor=""))
    assert quiet_base == {}
    assert server.stop() == 0
    assert sorted(os.listdir(tmp_path)) == ["chat.db"]  # the WAL folded in
    server = start(processes, db, "--sqlite-sync", sync, "--poll-timeout", "0.5")
    async with chat_on(server) as chat:
        assert await everything(chat) == before
        assert await poll_all(chat, before[1]["id"]) == before[2:]
        replayed = await chat.post_raw("m1", client_key="key-1")  # keys outlive the restart
        assert replayed.headers["Idempotent-Replayed"] == "true"
        assert await replayed.json() == before[1]
        async with chat.stream(headers={"Last-Event-ID": before[-1]["id"]}) as s:
            await s.read_bytes(len(OPENING))
            after = await chat.post("after")
            assert (await s.read_event())["id"] == after["id"]  # no reset first
            assert after["id"].split("-")[0] == before[0]["id"].split("-")[0]


async def test_kill_9_with_sync_normal_renames_the_histories(tmp_path: Path,
                                                            processes: list[ServerProcess]) -> None:
    """synchronous=NORMAL may lose the last commits on power loss: a run that did not stop
    cleanly cannot vouch for its last ids, so every history gets new ids (the messages stay)
    and an old cursor resets instead of being trusted."""
    db = tmp_path / "chat.db"
    server = start(processes, db, "--sqlite-sync", "normal")
    async with chat_on(server) as chat:
        before = [await chat.post(f"m{i}") for i in range(3)]
    server.stop(signal.SIGKILL)
    server = start(processes, db, "--sqlite-sync", "normal")
    assert "did not stop cleanly" in server.output()
    async with chat_on(server) as chat:
        kept = await everything(chat)
        assert [m["body"] for m in kept] == ["m0", "m1", "m2"]
        assert not {m["id"] for m in kept} & {m["id"] for m in before}
        async with chat.stream(last_event_id=before[-1]["id"]) as s:
            await s.read_bytes(len(OPENING))
            assert await s.read_event() == {"id": zero_cursor(kept[0]["id"]), "event": "reset",
                                            "data": '{"reason": "epoch"}'}


# ---- one owner, and files that are not ours ------------------------------------------------------

def test_a_second_server_on_the_same_file_is_refused(tmp_path: Path,
                                                     processes: list[ServerProcess]) -> None:
    db = tmp_path / "chat.db"
    start(processes, db)
    second = run_chat("--port", "0", "--store", sqlite_url(db))
    assert second.returncode == 2
    errors = [line for line in second.stderr.splitlines() if " INFO " not in line]
    assert len(errors) == 1 and f"{db} is in use by another chat server" in errors[0], second.stderr


def test_several_workers_on_one_file_are_refused(tmp_path: Path) -> None:
    result = run_chat("--port", "0", "--store", sqlite_url(tmp_path / "chat.db"), "--workers", "2")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "python -m chat: error: --workers 2 cannot share a SQLite file: one process owns it; use "
        "--workers 1, or --store redis://host:port/db for several processes"]
    assert not (tmp_path / "chat.db").exists()


def _foreign(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
        conn.commit()


def _ours(path: Path) -> None:
    """A file this server made (and stopped cleanly)."""
    with ServerProcess("--store", sqlite_url(path)):
        pass


def _ours_damaged(path: Path) -> None:
    _ours(path)
    data = bytearray(path.read_bytes())
    data[16:18] = b"\x00\x03"  # a page size that cannot be
    data[4096:8192] = os.urandom(4096)
    path.write_bytes(bytes(data))


def _ours_newer(path: Path) -> None:
    _ours(path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 99")


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_bytes(os.urandom(8192)), "is not a SQLite database"),
    (lambda p: p.write_text("hello, I am a text file\n" * 10), "is not a SQLite database"),
    (_foreign, "is a SQLite database of another program"),
    (_ours_damaged, "is damaged or not a chat database"),
    (_ours_newer, "was written by a newer version of chat"),
], ids=["random", "text", "foreign", "damaged", "newer"])
def test_a_file_that_is_not_ours_is_refused_and_left_alone(tmp_path: Path, make: Any,
                                                           words: str) -> None:
    db = tmp_path / "chat.db"
    make(db)
    original = db.read_bytes()
    result = run_chat("--port", "0", "--store", sqlite_url(db))
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if " INFO " not in line]
    assert len(errors) == 1 and words in errors[0] and "Traceback" not in result.stderr, result.stderr
    assert db.read_bytes() == original


def test_make_run_style_relative_path_creates_its_directory(tmp_path: Path) -> None:
    with ServerProcess("--store", "sqlite:///var/chat.db", cwd=tmp_path) as server:
        assert (tmp_path / "var" / "chat.db").is_file()
    assert server.proc is not None and server.proc.returncode == 0


# ---- retention ---------------------------------------------------------------------------------

async def test_retain_messages_trims_soon_and_old_cursors_reset_evicted(
        tmp_path: Path, processes: list[ServerProcess]) -> None:
    db = tmp_path / "chat.db"
    server = start(processes, db, "--retain-messages", "20", "--history", "5")
    async with chat_on(server) as chat:
        ids = [(await chat.post(f"m{i}"))["id"] for i in range(60)]

        async def kept() -> list[str]:
            return [m["id"] for m in await everything(chat)]

        await until(kept, ids[-20:], 10)
        # Older than the RAM window (5) but retained: replayed from the file, no reset.
        async with chat.stream(last_event_id=ids[-15]) as s:
            await s.read_bytes(len(OPENING))
            assert [m["id"] for m in await s.messages(14)] == ids[-14:]
        async with chat.stream(last_event_id=ids[10]) as s:
            await s.read_bytes(len(OPENING))
            assert await s.read_event() == {"id": ids[-6], "event": "reset",
                                            "data": '{"reason": "evicted"}'}
            assert [m["id"] for m in await s.messages(5)] == ids[-5:]


def _disk(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


async def test_the_file_levels_off_under_churn(tmp_path: Path,
                                               processes: list[ServerProcess]) -> None:
    """With retention the file levels off: four times as many posts after a first stop leave it
    far from five times the size. Each clean stop folds the WAL in, so what is measured is the
    file itself, not a WAL caught between checkpoints."""
    db = tmp_path / "chat.db"
    body = "x" * 1000

    async def churn(rounds: int) -> int:
        server = start(processes, db, "--retain-messages", "50")
        async with chat_on(server) as chat:
            async def post_some(room: str) -> None:
                for _ in range(100):
                    await chat.post(body, room=room)

            for _ in range(rounds):
                await asyncio.gather(*(post_some(f"r{k}") for k in range(4)))
                for k in range(4):
                    await until(functools.partial(_count, chat, f"r{k}"), 50, 10)
        assert server.stop() == 0
        return _disk(db)

    first = await churn(2)  # 800 posts of 1 KB, 200 kept
    then = await churn(8)  # 3,200 more: without retention the file would be five times bigger
    # Not equal: the high-water mark of posts not yet trimmed varies from run to run.
    assert then < first * 2, (first, then)
    assert then < 4 * 1024 * 1024, (first, then)


async def test_lowering_retention_gives_the_space_back(tmp_path: Path,
                                                       processes: list[ServerProcess]) -> None:
    """Incremental vacuum: pages freed by a trim go back to the file system, not just to the
    file's free list."""
    db = tmp_path / "chat.db"
    server = start(processes, db)
    async with chat_on(server) as chat:
        async def post_some(k: int) -> None:
            for i in range(250):
                await chat.post(f"{k}-{i} " + "y" * 2000)

        await asyncio.gather(*(post_some(k) for k in range(8)))
    assert server.stop() == 0
    full = db.stat().st_size
    assert full > 4_000_000
    server = start(processes, db, "--retain-messages", "10")
    async with chat_on(server) as chat:
        await until(functools.partial(_count, chat, "main"), 10, 20)

        async def file_size() -> bool:
            return db.stat().st_size < full // 4

        await until(file_size, True, 20)
    assert server.stop() == 0
    assert db.stat().st_size < full // 4, (full, db.stat().st_size)


async def _count(chat: Chat, room: str) -> int:
    return len(await everything(chat, room))


async def test_retain_days_takes_fractions_and_forgets_expired_rooms(
        tmp_path: Path, processes: list[ServerProcess]) -> None:
    db = tmp_path / "chat.db"
    server = start(processes, db, "--retain-days", "0.00007")  # 6.05 s
    async with chat_on(server) as chat:
        old = [(await chat.post(f"old{i}"))["id"] for i in range(3)]
        await asyncio.sleep(3.0)
        new = [(await chat.post(f"new{i}"))["id"] for i in range(3)]

        async def kept() -> list[str]:
            return [m["id"] for m in await everything(chat)]

        await until(kept, new, 10)
        async with chat.stream(last_event_id=old[0]) as s:
            await s.read_bytes(len(OPENING))
            assert (await s.read_event())["data"] == '{"reason": "evicted"}'
            assert [m["id"] for m in await s.messages(3)] == new
        await until(kept, [], 10)  # every message expired: the room is forgotten
        fresh = await chat.post("fresh")
        assert fresh["id"].split("-")[0] != new[0].split("-")[0]
        async with chat.stream(last_event_id=new[-1]) as s:
            await s.read_bytes(len(OPENING))
            assert (await s.read_event())["event"] == "reset"
            assert [m["id"] for m in await s.messages(1)] == [fresh["id"]]


async def test_the_room_list_outlives_a_restart_but_not_its_rooms(
        tmp_path: Path, processes: list[ServerProcess]) -> None:
    """After a restart GET /a/rooms lists the file's rooms, newest first, before anybody has
    visited them; a room that retention forgets leaves the list."""
    db = tmp_path / "chat.db"
    server = start(processes, db)
    async with chat_on(server) as chat:
        await chat.post("hi", room="lobby")
        ops = await chat.post("hi", room="ops")
        lobby = await chat.post("again", room="lobby")
    assert server.stop() == 0

    server = start(processes, db, "--retain-days", "0.00007")  # 6.05 s after each message
    async with chat_on(server) as chat:
        assert await chat.rooms() == [("lobby", 0, lobby["ts"]), ("ops", 0, ops["ts"])]
        await until(chat.rooms, [], 10)


# ---- disk full ---------------------------------------------------------------------------------

@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs root and a kernel that lets us mount)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path) -> Path:
    """Take every free byte of ``directory``'s file system."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 16, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


async def test_disk_full_is_a_503_and_posting_resumes_when_space_is_back(
        tiny_disk: Path, processes: list[ServerProcess]) -> None:
    server = start(processes, tiny_disk / "chat.db", "--ping-interval", "0.5")
    async with chat_on(server) as chat:
        first = [await chat.post(f"m{i}") for i in range(3)]
        async with chat.stream(last_event_id=first[-1]["id"]) as live:
            await live.read_bytes(len(OPENING))
            filler = _fill(tiny_disk)
            for _ in range(5):
                response = await chat.post_raw("x" * 3000)
                assert response.status == 503, await response.text()
                assert "unavailable" in (await response.json())["error"]
            # Still serving: the page, scroll-back, a stream's heartbeats.
            assert (await chat.client.get("/")).status == 200
            assert await everything(chat) == first
            assert await live.read_frame() == b": ping\n\n"
            filler.unlink()
            again = await chat.post("space is back")
            assert again["id"].split("-")[1] == "4"  # the refused posts used no position
            assert (await live.read_event())["id"] == again["id"]
        assert await everything(chat) == [*first, again]
    assert "could not write" in server.output()
