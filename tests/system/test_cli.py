"""``python -m chat``: options, environment, errors, and the production server's lifecycle."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from chat.settings import Settings, env_name, options, parse_settings

from ..support import NO_LIMITS, XSRF, ServerProcess, run_chat, until


def test_help_explains_every_option() -> None:
    result = run_chat("--help")
    assert result.returncode == 0
    for option, field in options():
        assert option in result.stdout and env_name(field) in result.stdout


def test_console_script_is_installed() -> None:
    import shutil
    script = shutil.which("chat-server", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert script is not None
    assert subprocess.run([script, "--help"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.parametrize("args, env, words", [
    (["--port", "abc"], {}, "--port: expected a whole number, got 'abc'"),
    (["--port", "70000"], {}, "--port: expected 0 to 65535, got 70000"),
    (["--history", "0"], {}, "--history: expected 1 to 1000000, got 0"),
    (["--poll-timeout", "-1"], {}, "--poll-timeout: expected more than 0"),
    (["--ping-interval", "soon"], {}, "--ping-interval: expected seconds, got 'soon'"),
    (["--max-body", "1.5"], {}, "--max-body: expected a whole number"),
    (["--store", "ftp://x"], {}, "--store: expected 'memory', a redis:// URL or sqlite:///PATH"),
    (["--store", "sqlite:///"], {}, "--store: expected 'memory', a redis:// URL or sqlite:///PATH"),
    (["--sqlite-sync", "off"], {}, "--sqlite-sync: expected full or normal, got 'off'"),
    (["--bogus"], {}, "unrecognized arguments: --bogus"),
    ([], {"CHAT_PORT": "eighty"}, "CHAT_PORT: expected a whole number, got 'eighty'"),
    ([], {"CHAT_POLL_TIMEOUT": "0"}, "CHAT_POLL_TIMEOUT: expected more than 0"),
], ids=["port-word", "port-range", "history-0", "poll-negative", "ping-word", "body-float",
        "store-scheme", "sqlite-no-path", "sqlite-sync", "unknown", "env-port", "env-poll"])
def test_bad_value_is_one_line_naming_the_option(args: list[str], env: dict[str, str],
                                                 words: str) -> None:
    result = run_chat(*args, env=env)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr


def test_environment_and_command_line() -> None:
    settings, _ = parse_settings(["--history", "7"], {"CHAT_HISTORY": "5", "CHAT_PORT": "9001",
                                                      "CHAT_POLL_TIMEOUT": "2.5"})
    assert (settings.history, settings.port, settings.poll_timeout) == (7, 9001, 2.5)
    defaults, _ = parse_settings([], {})
    assert defaults == Settings()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body


def _metric(server: ServerProcess, name: str) -> float:
    for line in _get(server.url + "/metrics").decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(name)


async def test_production_server_drops_waiters_of_clients_that_left() -> None:
    """run_app must cancel handlers on disconnect like the test server does."""
    with ServerProcess("--poll-timeout", "60") as server:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        body = f"_xsrf={XSRF}".encode()
        writer.write(b"POST /a/message/updates HTTP/1.1\r\nHost: x\r\nCookie: _xsrf=" +
                     XSRF.encode() + b"\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        await until(lambda: _metric(server, "chat_poll_waiters"), 1, 5)
        writer.close()
        await until(lambda: _metric(server, "chat_poll_waiters"), 0, 1)  # gone with its client


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_ends_1000_streams_and_polls_and_exits(sig: int) -> None:
    # A 30 s grace period: exiting well before it shows on_shutdown ended everything itself.
    with ServerProcess("--shutdown-timeout", "30", "--poll-timeout", "60", *NO_LIMITS) as server:
        streams = []
        for i in range(1000):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /a/message/stream HTTP/1.1\r\nHost: x\r\n\r\n")
            streams.append((reader, writer))
            if i % 100 == 99:
                await writer.drain()
        polls = []
        body = f"_xsrf={XSRF}".encode()
        for _ in range(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"POST /a/message/updates HTTP/1.1\r\nHost: x\r\nCookie: _xsrf=" +
                         XSRF.encode() + b"\r\nContent-Type: application/x-www-form-urlencoded"
                         b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            polls.append((reader, writer))
        await until(lambda: (_metric(server, "chat_stream_clients"),
                             _metric(server, "chat_poll_waiters")), (1000, 20), 30)
        started = time.monotonic()
        assert server.proc is not None
        server.proc.send_signal(sig)
        code = await asyncio.to_thread(server.proc.wait, 30)
        took = time.monotonic() - started
        assert code == 0, server.output()
        # The contract is a timing: far below the 30 s grace, so nothing waited for it (a
        # generous bound: 15 s on a busy machine is still not the grace period).
        assert took < 15, took
        # Every stream ended its chunked body cleanly; every poll got {}.
        for reader, writer in streams[:50]:
            data = await asyncio.wait_for(reader.read(), 5)
            # (between the opening and the end only presence frames: no message was posted)
            assert b"retry: 1000\n: stream open\n\n" in data and b"id: " not in data, data
            assert data.endswith(b"\n\n\r\n0\r\n\r\n"), data[-80:]
            writer.close()
        for reader, writer in polls:
            data = await asyncio.wait_for(reader.read(), 5)
            assert data.endswith(b"\r\n\r\n{}"), data[-80:]
            writer.close()
        for _, writer in streams[50:]:
            writer.close()
        assert "Traceback" not in server.output(), server.output()


def test_serves_and_reports_its_address() -> None:
    with ServerProcess() as server:
        request = urllib.request.Request(
            server.url + "/a/message/new", data=f"body=hi&_xsrf={XSRF}".encode(),
            headers={"Cookie": f"_xsrf={XSRF}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["body"] == "hi"
        assert _get(server.url + "/healthz") == b"ok"
        assert server.stop() == 0
        assert f"Running on http://127.0.0.1:{server.port}" in server.output()
