"""What /proc says about a process tree and the machine: CPU time, RSS, load, versions. Linux only."""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
BACKLOG_SYSCTL = Path("/proc/sys/net/core/netdev_max_backlog")
WANTED_BACKLOG = 100_000


def tree(pid: int) -> list[int]:
    """``pid`` and every live descendant (gunicorn workers, for instance)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_bytes()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_stat(pids: list[int]) -> float:
    """utime + stime of ``pids`` in seconds, from /proc/PID/stat (clock-tick resolution)."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return total / CLK_TCK


def cpu_ns(pids: list[int]) -> float:
    """On-CPU seconds of every thread of ``pids``, from /proc/PID/task/*/schedstat (ns resolution).

    The same figure as /proc/PID/stat's utime+stime, without its 10 ms ticks; 0 if unavailable.
    """
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_bytes().split()[0])
            except (OSError, IndexError, ValueError):
                continue
    return total / 1e9


class CpuClock:
    """Server CPU seconds: schedstat when the kernel has it, else stat; both kept for the record."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def read(self) -> tuple[float, float]:
        pids = tree(self.pid)
        return cpu_ns(pids), cpu_stat(pids)


def rss(pids: list[int]) -> int:
    """Resident set size in bytes, summed over ``pids``."""
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


def tcp_counters() -> dict[str, int]:
    """Machine-wide TCP counters that explain slow connects: accept-queue overflows (the SYN or
    the handshake's last ACK dropped, so the client retries a second later) and SYN retransmits."""
    out: dict[str, int] = {}
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return out
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            row = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            for name in ("ListenOverflows", "ListenDrops", "TCPSynRetrans"):
                if name in row:
                    out[name] = int(row[name])
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat, to tell how noisy a run was."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def wait_quiet(limit: float, timeout: float, window: float = 1.0) -> float:
    """Wait (up to ``timeout`` s) until the machine's busy CPU over ``window`` is below ``limit``
    cores; return the last reading. Other people's test runs are the noise worth waiting out."""
    deadline = time.monotonic() + timeout
    while True:
        b0, _ = machine_busy()
        time.sleep(window)
        b1, _ = machine_busy()
        busy = (b1 - b0) / window
        if busy < limit or time.monotonic() >= deadline:
            return busy


def netdev_backlog() -> int | None:
    try:
        return int(BACKLOG_SYSCTL.read_text())
    except (OSError, ValueError):
        return None


def raise_netdev_backlog(allowed: bool) -> tuple[int | None, str | None]:
    """Raise net.core.netdev_max_backlog for the run when root; returns (old value to restore, note)."""
    old = netdev_backlog()
    if old is None or old >= WANTED_BACKLOG:
        return None, None
    if allowed and os.geteuid() == 0:
        try:
            BACKLOG_SYSCTL.write_text(str(WANTED_BACKLOG))
        except OSError as exc:
            return None, f"could not raise net.core.netdev_max_backlog ({old}): {exc}"
        return old, (f"raised net.core.netdev_max_backlog {old} -> {WANTED_BACKLOG} for this run "
                     "(restored at exit)")
    return None, (f"WARNING: net.core.netdev_max_backlog={old}: loopback drops packets when the server "
                  f"writes to thousands of sockets at once (0.2-1.6 s retransmit tails); run "
                  f"`sysctl -w net.core.netdev_max_backlog={WANTED_BACKLOG}` as root")


def reraise_netdev_backlog() -> None:
    """Raise it again before a run if something (another harness restoring its own old value)
    lowered it meanwhile; only as root, silently otherwise."""
    value = netdev_backlog()
    if value is not None and value < WANTED_BACKLOG and os.geteuid() == 0:
        try:
            BACKLOG_SYSCTL.write_text(str(WANTED_BACKLOG))
        except OSError:
            pass


def restore_netdev_backlog(old: int | None) -> None:
    if old is not None:
        try:
            BACKLOG_SYSCTL.write_text(str(old))
        except OSError:
            pass


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """Which machine and software a result came from; goes into every JSON line."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "aiohttp": _version("aiohttp"),
        "uvloop": _version("uvloop"),
        "mem_gib": round(os.sysconf("SC_PHYS_PAGES") * PAGE / 2**30, 1),
    }
