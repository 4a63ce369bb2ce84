"""``python -m chat.post`` against real servers: TEXT and stdin lines, with and without a key,
refusals, retries with one idempotency key per message, a server that is down, arguments."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from pathlib import Path

import pytest

from ..support import NO_LIMITS, ServerProcess, free_port, run_chat, sqlite_url
from ..support.commands import API_KEY, history, post_command
from ..support.servers import HttpFront

SERVER = (*NO_LIMITS, "--retry-ms", "100", "--poll-timeout", "1", "--api-keys", API_KEY)


@pytest.mark.parametrize("how", ["form", "option", "environment"])
async def test_text_arguments_are_one_message(how: str) -> None:
    args: tuple[str, ...] = ("--api-key", API_KEY) if how == "option" else ()
    env = {"CHAT_API_KEY": API_KEY} if how == "environment" else {"CHAT_API_KEY": ""}
    with ServerProcess(*SERVER) as server:
        front = await HttpFront(server.url).start()
        try:
            async with post_command(front.url, "--room", "lobby", "hello", "there", "--name",
                                    "bot", *args, env=env) as command:
                assert await command.wait() == 0, command.errors
                printed = [json.loads(line) for line in (await command.output()).splitlines()]
            assert command.errors == ""
            assert printed == await history(server.url, "lobby")
            assert [(m["body"], m["name"]) for m in printed] == [("hello there", "bot")]
            used_api = bool(front.to("/api/rooms/lobby/messages"))
            assert used_api == (how != "form") and bool(front.to("/a/message/new")) == (how == "form")
        finally:
            await front.close()


async def test_each_stdin_line_is_a_message_in_order() -> None:
    lines = b"first\n\n  \nsecond line\r\nthird <b>&</b>\nno newline at the end"
    with ServerProcess(*SERVER) as server:
        async with post_command(server.url, stdin=lines) as command:
            assert await command.wait() == 0, command.errors
            printed = [json.loads(line) for line in (await command.output()).splitlines()]
        stored = await history(server.url)
        assert printed == stored
        assert [m["body"] for m in stored] == ["first", "second line", "third <b>&</b>",
                                               "no newline at the end"]


async def test_a_refused_line_is_reported_and_the_others_are_stored() -> None:
    lines = b"ok 1\n" + b"x" * 5000 + b"\n\xff\xfe\nok 2\n"
    with ServerProcess(*SERVER) as server:
        async with post_command(server.url, "--api-key", API_KEY, stdin=lines) as command:
            assert await command.wait() == 1
        assert [m["body"] for m in await history(server.url)] == ["ok 1", "ok 2"]
        assert "line 2 not stored: HTTP 400: body is longer than 4096 characters" in command.errors
        assert "line 3 not stored: not valid UTF-8" in command.errors


async def test_a_wrong_key_stops_with_the_reason_and_never_shows_the_key() -> None:
    with ServerProcess(*SERVER) as server:
        async with post_command(server.url, "--api-key", "not-the-key-42",
                                stdin=b"one\ntwo\n") as command:
            assert await command.wait() == 1
            assert await command.output() == ""
        assert "line 1 not stored: HTTP 401: invalid API key" in command.errors
        assert "stopped" in command.errors and "not-the-key-42" not in command.errors
        assert await history(server.url) == []


async def test_retries_503_and_429_with_one_key_per_message() -> None:
    with ServerProcess(*SERVER) as server:
        front = await HttpFront(server.url).start()
        path = "/api/rooms/main/messages"
        front.faults = [(path, "503"), (path, "429"), (path, "503")]
        try:
            async with post_command(front.url, "--api-key", API_KEY,
                                    stdin=b"alpha\nbeta\n") as command:
                assert await command.wait() == 0, command.errors
            attempts = front.to(path)
            keys = [r[2]["Idempotency-Key"] for r in attempts]
            # alpha: 503, 429, 503, stored; beta: stored at once. One key per message.
            assert len(keys) == 5 and len(set(keys[:4])) == 1 and keys[4] != keys[0]
            assert [m["body"] for m in await history(server.url)] == ["alpha", "beta"]
            # Said once when the trouble began, once when it ended.
            assert command.errors.count("retrying") == 1 and "stored again" in command.errors
        finally:
            await front.close()


async def test_the_form_retries_with_one_client_key() -> None:
    with ServerProcess(*SERVER) as server:
        front = await HttpFront(server.url).start()
        front.faults = [("/a/message/new", "503"), ("/a/message/new", "503")]
        try:
            async with post_command(front.url, "hello", env={"CHAT_API_KEY": ""}) as command:
                assert await command.wait() == 0, command.errors
            forms = [dict(urllib.parse.parse_qsl(r[3].decode())) for r in front.to("/a/message/new")]
            assert len(forms) == 3 and len({f["client_key"] for f in forms}) == 1
            assert [m["body"] for m in await history(server.url)] == ["hello"]
        finally:
            await front.close()


async def test_server_down_then_up_the_message_is_stored_once() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with post_command(url, "--api-key", API_KEY, "while down") as command:
        await command.stderr_until("not stored yet")
        with ServerProcess(*SERVER) as server:
            server.stop()
            server.start(port=port)
            assert await command.wait() == 0, command.errors
            assert [m["body"] for m in await history(server.url)] == ["while down"]
        assert command.errors.count("not stored yet") == 1


@pytest.mark.parametrize("args, words", [
    ([], "the following arguments are required: URL"),
    (["ftp://host", "x"], "expected an http:// or https:// URL"),
    (["http://h", "--room", "a/b", "x"], "--room: expected 1 to 64"),
    (["http://h", "--api-key", "two words", "x"], "the API key must be one word"),
    (["http://h", "--bogus", "x"], "unrecognized arguments: --bogus"),
], ids=["no-url", "bad-url", "bad-room", "bad-key", "unknown"])
def test_bad_arguments_one_line_exit_2(args: list[str], words: str) -> None:
    result = run_chat(*args, module="chat.post")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "two words" not in result.stderr


async def test_a_thousand_lines_while_a_sqlite_server_restarts(tmp_path: Path) -> None:
    """The server is stopped and started again (same file, same port) while chat.post sends
    1,000 lines: every line is stored exactly once, in order. A post whose reply the restart cut
    is retried with its key, which SQLite remembers across the restart."""
    lines = [f"line {i:04}" for i in range(1000)]
    args = (*SERVER, "--store", sqlite_url(tmp_path / "chat.db"), "--history", "2000",
            "--api-post-rate", "0")
    with ServerProcess(*args) as server:
        port = server.port
        async with post_command(server.url, "--api-key", API_KEY,
                                stdin="\n".join(lines).encode()) as command:
            printed = [json.loads(await command.line()) for _ in range(300)]
            server.stop()
            server.start(port=port)
            rest = await asyncio.wait_for(command.output(), 120)  # read on: a full pipe stalls it
            assert await command.wait() == 0, command.errors
            printed += [json.loads(line) for line in rest.splitlines()]
        stored = await history(server.url)
    assert [m["body"] for m in stored] == lines
    assert [m["id"] for m in printed] == [m["id"] for m in stored]
