"""``python -m chat.tail`` against real servers: cut streams, held reconnects, kill -9 and
restarts (its own and the server's), refused streams, arguments."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from ..support import NO_LIMITS, ServerProcess, free_port, run_chat, until
from ..support.commands import bodies, post, tail
from ..support.servers import HttpFront, TcpProxy

SERVER = (*NO_LIMITS, "--retry-ms", "100", "--poll-timeout", "1")


async def test_every_message_once_in_order_through_a_cut_and_a_held_reconnect() -> None:
    with ServerProcess(*SERVER) as server:
        proxy = TcpProxy(server.port)
        await proxy.up()
        try:
            async with tail(f"http://127.0.0.1:{proxy.port}", "--from", "earliest") as t:
                for i in range(3):
                    await post(server.url, f"m{i}")
                assert bodies(await t.json_lines(3)) == ["m0", "m1", "m2"]
                # The next frame is cut after its id: line and half its data; the reconnection
                # that follows is held while more messages are posted.
                proxy.hold()
                proxy.cut_at(b'"body":"m3"')
                await post(server.url, "m3")
                await until(lambda: (proxy.cuts, proxy.held), (1, 1))
                for i in range(4, 8):
                    await post(server.url, f"m{i}")
                proxy.release()
                assert bodies(await t.json_lines(5)) == ["m3", "m4", "m5", "m6", "m7"]
                await post(server.url, "m8")  # live again, and nothing printed in between
                assert bodies(await t.json_lines(1)) == ["m8"]
                assert t.errors.count("cannot reach") <= 1, t.errors
        finally:
            await proxy.close()



async def test_kill_9_then_restart_with_state_prints_exactly_the_missed(tmp_path: Path) -> None:
    state = tmp_path / "tail.state"
    with ServerProcess(*SERVER) as server:
        async with tail(server.url, "--from", "earliest", "--state", str(state)) as first:
            posted = [await post(server.url, f"m{i}") for i in range(2)]
            assert await first.json_lines(2) == posted
            await until(lambda: _saved(state), {"room": "main", "id": posted[-1]["id"]})
            assert first.proc is not None
            first.proc.kill()  # SIGKILL: no chance to flush or save anything more
            assert await first.wait() == -signal.SIGKILL
        missed = [await post(server.url, f"missed {i}") for i in range(3)]
        # An existing state file wins over --from.
        async with tail(server.url, "--from", "latest", "--state", str(state)) as second:
            assert await second.json_lines(3) == missed
            after = await post(server.url, "after")
            assert await second.json_lines(1) == [after]
            await until(lambda: _saved(state), {"room": "main", "id": after["id"]})
            assert await second.stop(signal.SIGINT) == 0
    assert sorted(os.listdir(tmp_path)) == ["tail.state"]  # no temporary file left behind


def _saved(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


async def test_started_live_with_state_remembers_where_it_started(tmp_path: Path) -> None:
    """Stopped before any message came, it still prints what was posted while it was down."""
    state = tmp_path / "tail.state"
    with ServerProcess(*SERVER) as server:
        old = await post(server.url, "before it started")
        async with tail(server.url, "--state", str(state)) as first:  # --from latest
            await first.stderr_until("following room main")
            await until(lambda: _saved(state), {"room": "main", "id": old["id"]})
            assert await first.stop() == 0
        missed = await post(server.url, "while it was down")
        async with tail(server.url, "--state", str(state)) as second:
            assert await second.json_lines(1) == [missed]


async def test_memory_server_restarted_under_it_one_reset_then_new_messages() -> None:
    with ServerProcess(*SERVER) as server:
        async with tail(server.url, "--from", "earliest") as t:
            await post(server.url, "old history")
            assert bodies(await t.json_lines(1)) == ["old history"]
            server.stop()
            server.start(port=server.port)  # a new epoch: the tail's cursor is foreign now
            await post(server.url, "new 1")
            assert bodies(await t.json_lines(2)) == [{"reset": "epoch"}, "new 1"]
            await post(server.url, "new 2")
            assert bodies(await t.json_lines(1)) == ["new 2"]  # no second reset
            assert t.errors.count("cannot reach") <= 1, t.errors


async def test_unreachable_server_said_once_and_retried_until_it_comes() -> None:
    port = free_port()
    proxy = TcpProxy(port)  # accepts, then finds nothing behind it: counts the attempts
    await proxy.up()
    try:
        async with tail(f"http://127.0.0.1:{proxy.port}", "--from", "earliest") as t:
            await t.stderr_until("cannot reach")
            await until(lambda: proxy.accepted >= 3, True, timeout=20)
            assert t.errors.count("cannot reach") == 1, t.errors
            with ServerProcess(*SERVER) as server:
                server.stop()
                server.start(port=port)
                await post(server.url, "it came")
                assert bodies(await t.json_lines(1, timeout=20)) == ["it came"]
                lines = t.errors.splitlines()
                assert [line.split(" (")[0] for line in lines] == [
                    f"python -m chat.tail: cannot reach http://127.0.0.1:{proxy.port}",
                    f"python -m chat.tail: following room main on http://127.0.0.1:{proxy.port}"]
    finally:
        await proxy.close()


@pytest.mark.parametrize("refusal", [(404, "text/html"), (200, "text/html")],
                         ids=["404", "200-html"])
async def test_refused_streams_fall_back_to_long_poll(refusal: tuple[int, str]) -> None:
    with ServerProcess(*SERVER) as server:
        front = await HttpFront(server.url).start()
        front.refuse_streams = refusal
        try:
            await post(server.url, "before")
            async with tail(front.url, "--from", "earliest", "--room", "main") as t:
                assert bodies(await t.json_lines(1)) == ["before"]
                for i in range(3):
                    await post(server.url, f"polled {i}")
                    assert bodies(await t.json_lines(1)) == [f"polled {i}"]
                await t.stderr_until(f"(poll: stream refused: HTTP {refusal[0]} text/html)")
            assert len(front.to("/a/message/stream")) == 1
            assert len(front.to("/a/message/updates")) >= 4
        finally:
            await front.close()


async def test_text_format_and_signals_exit_0() -> None:
    with ServerProcess(*SERVER) as server:
        await post(server.url, "two\nlines")
        async with tail(server.url, "--from", "earliest", "--format", "text") as t:
            first, second = await t.line(), await t.line()
            assert first.endswith(" anonymous: two") and second == " " * 9 + "lines"
            assert await t.stop(signal.SIGTERM) == 0
            assert "Traceback" not in t.errors


@pytest.mark.parametrize("args, words", [
    ([], "the following arguments are required: URL"),
    (["ftp://host"], "expected an http:// or https:// URL"),
    (["http://h", "--room", "no such"], "--room: expected 1 to 64"),
    (["http://h", "--from", "the start"], "--from: expected earliest, latest or a message id"),
    (["http://h", "--format", "xml"], "--format: invalid choice"),
    (["http://h", "--bogus"], "unrecognized arguments: --bogus"),
], ids=["no-url", "bad-url", "bad-room", "bad-from", "bad-format", "unknown"])
def test_bad_arguments_one_line_exit_2(args: list[str], words: str) -> None:
    result = run_chat(*args, module="chat.tail")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr


@pytest.mark.parametrize("content, words", [
    ("not json", "not a state file"),
    ('{"room": "main", "id": "a b"}', "not a state file"),
    ('{"room": "lobby", "id": "abc-1"}', "it follows room 'lobby', not 'main'"),
], ids=["garbage", "bad-id", "other-room"])
def test_bad_state_file_one_line_exit_2(tmp_path: Path, content: str, words: str) -> None:
    state = tmp_path / "state"
    state.write_text(content)
    result = run_chat("http://127.0.0.1:1", "--state", str(state), module="chat.tail")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
