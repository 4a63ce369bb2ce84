"""A client that vanishes without a FIN or RST (half-open) is noticed by the heartbeat.

The client runs in its own network namespace behind a veth pair; taking its end of the link
down makes it vanish for real: the server's heartbeats are never acknowledged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest

from ..support import ServerProcess, until_sync

CLIENT = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(b"GET /a/message/stream HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
data = b""
while b": stream open" not in data:
    data += s.recv(4096)
print("open", flush=True)
time.sleep(120)
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespace() -> Iterator[tuple[str, str, str]]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to build a network namespace")
    n = os.getpid() % 100_000
    ns, host_if, peer_if = f"chat-ho-{n}", f"vh{n}", f"vc{n}"
    net = f"10.231.{n % 250}"
    try:
        ip("netns", "add", ns)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc.stderr.decode().strip()}")
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        ip("link", "set", peer_if, "netns", ns)
        ip("addr", "add", f"{net}.1/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("netns", "exec", ns, "ip", "addr", "add", f"{net}.2/30", "dev", peer_if)
        ip("netns", "exec", ns, "ip", "link", "set", peer_if, "up")
        yield ns, peer_if, f"{net}.1"
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def metric(server: ServerProcess, name: str) -> float:
    with urllib.request.urlopen(server.url + "/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(name)


def test_half_open_client_is_dropped_within_two_heartbeats(namespace: tuple[str, str, str]) -> None:
    ns, peer_if, host = namespace
    ping, stall = 1.0, 1.0
    with ServerProcess("--ping-interval", str(ping), "--stall-timeout", str(stall),
                       host=host) as server:
        client = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT,
                                   host, str(server.port)], stdout=subprocess.PIPE)
        try:
            assert client.stdout is not None and client.stdout.readline() == b"open\n"
            until_sync(lambda: metric(server, "chat_stream_clients"), 1, 5)
            ip("netns", "exec", ns, "ip", "link", "set", peer_if, "down")  # vanish
            # The timing is the contract: dropped within a heartbeat, the stall timeout and a
            # 1/4-stall sweep (ping + stall + 0.25 s), plus a generous slack for a busy machine.
            until_sync(lambda: metric(server, "chat_stream_clients"), 0, ping + stall + 3)
            assert metric(server, 'chat_clients_dropped_total{reason="stalled"}') == 1
            assert "event=dropped reason=stalled" in server.output()
        finally:
            client.kill()
            client.wait()
            if client.stdout is not None:
                client.stdout.close()
