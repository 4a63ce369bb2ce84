"""``python -m chat.tail URL``: print a room's messages as they come, one JSON object per line.

With ``--state FILE`` it remembers the last id it printed and, started again, goes on right after
it: stop it, post, start it, and it prints exactly what it missed. It imports only chat.client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .client import EARLIEST, ChatClientError, Reset, Status, subscribe
from .client.common import ID_RE, OneLineParser, base_url, room_argument, until_signalled

PROG = "python -m chat.tail"


def _start(text: str) -> str:
    if text in ("earliest", "latest") or ID_RE.fullmatch(text):
        return text
    raise argparse.ArgumentTypeError(f"expected earliest, latest or a message id, got {text!r}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog=PROG, description=(
        "Print a room's messages as they arrive: one JSON object per line (the message object), "
        'and {"reset": REASON} when the server lost the history the cursor pointed into. '
        "Reconnects by itself; SIGINT or SIGTERM ends it (exit status 0)."))
    parser.add_argument("url", metavar="URL", help="the chat server, e.g. http://127.0.0.1:8888")
    parser.add_argument("--room", type=room_argument, default="main",
                        help="the room (default: main)")
    parser.add_argument("--from", dest="start", type=_start, default="latest",
                        metavar="earliest|latest|ID",
                        help="where to start: everything the server holds, only new messages "
                             "(default), or after the message ID; a --state file wins over it")
    parser.add_argument("--state", type=Path, metavar="FILE",
                        help="remember the last printed id in FILE and continue from it next time")
    parser.add_argument("--format", choices=["json", "text"], default="json",
                        help="json (default): one message object per line; text: for people")
    args = parser.parse_args(argv)
    try:
        base_url(args.url)
    except ValueError as exc:
        parser.error(str(exc))
    if args.state is not None:
        try:
            args.saved = read_state(args.state, args.room)
        except ValueError as exc:
            parser.error(f"--state {args.state}: {exc}")
    return args


# ---- the state file ----------------------------------------------------------------------------

def read_state(path: Path, room: str) -> str | None:
    """The id saved in ``path`` for ``room``; None when there is no file yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from None
    try:
        state = json.loads(text)
    except ValueError:
        state = None
    if not isinstance(state, dict) or not isinstance(state.get("id"), str) or \
            not ID_RE.fullmatch(state["id"]) or not isinstance(state.get("room"), str):
        raise ValueError('not a state file of chat.tail (expected {"room": ..., "id": ...})')
    if state["room"] != room:
        raise ValueError(f"it follows room {state['room']!r}, not {room!r}")
    return str(state["id"])


def write_state(path: Path, room: str, last_id: str) -> None:
    """Replace ``path`` atomically: a crash at any moment leaves the old state or the new one.

    The data is fsync'd before the rename, so the new name never points to an empty file. The
    directory is not fsync'd on every line: after a power cut the rename may be lost, which
    repeats a few messages on the next start but never skips one.
    """
    data = json.dumps({"room": room, "id": last_id}).encode() + b"\n"
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


# ---- output ------------------------------------------------------------------------------------

def as_line(item: dict[str, Any] | Reset, text: bool) -> str:
    if isinstance(item, Reset):
        if text:
            return f"-- reset ({item.reason}): messages may have been missed --"
        return json.dumps({"reset": item.reason})
    if not text:
        return json.dumps(item, separators=(",", ":"))
    when = datetime.datetime.fromtimestamp(float(item.get("ts") or 0)).strftime("%H:%M:%S")
    body = str(item.get("body", "")).replace("\n", "\n" + " " * 9)
    return f"{when} {item.get('name') or 'anonymous'}: {body}"


def _say(text: str) -> None:
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)


class Tail:
    """Prints what the subscription hands out, and saves where it stands after each line."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.text = args.format == "text"
        saved = getattr(args, "saved", None)
        after = saved if saved is not None else {"latest": None, "earliest": EARLIEST}.get(
            args.start, args.start)
        self.saved = saved
        self.sub = subscribe(args.url, args.room, after=after, on_status=self.status)

    def save(self) -> None:
        cursor = self.sub.cursor
        if self.args.state is not None and cursor is not None and cursor != self.saved:
            write_state(self.args.state, self.args.room, cursor)
            self.saved = cursor

    def status(self, status: Status) -> None:
        """Once per change: connected (and how) or not (and why)."""
        if status.connected:
            how = status.transport + (f": {status.detail}" if status.detail else "")
            _say(f"following room {self.args.room} on {self.args.url} ({how})")
            # Started live: where it started is worth keeping before the first line, so that a
            # restart still prints what came in between.
            self.save()
        else:
            _say(f"cannot reach {self.args.url} ({status.detail}); retrying")

    async def run(self) -> int:
        out = sys.stdout
        async with self.sub:
            try:
                async for item in self.sub:
                    out.write(as_line(item, self.text) + "\n")
                    out.flush()
                    self.save()
            except ChatClientError as exc:
                _say(str(exc))
                return 1
        return 0


async def _main(args: argparse.Namespace) -> int:
    # Interrupted: every printed line was flushed (and saved) before the next wait: exit 0.
    return await until_signalled(Tail(args).run(), lambda: 0)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    try:
        code = asyncio.run(_main(args))
    except BrokenPipeError:  # the reader went away (| head): not an error of ours
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    raise SystemExit(code)


if __name__ == "__main__":
    main()
