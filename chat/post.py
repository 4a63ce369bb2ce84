"""``python -m chat.post URL [TEXT ...]``: post TEXT, or each line of stdin, and print each stored
message as one JSON line.

Each message gets one idempotency key, sent again on every retry of that message, so a server that
keeps keys stores it once however many replies were lost. Exit status 0 when every message was
stored, 1 otherwise (the reason on stderr), 2 for bad arguments. It imports only chat.client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
from collections.abc import Sequence

from .client import Publisher, PublishError
from .client.common import OneLineParser, base_url, room_argument, until_signalled

PROG = "python -m chat.post"
# Refusals about this one message: the next line may well be stored.
MESSAGE_ERRORS = frozenset({400, 413, 422})


def parse_args(argv: Sequence[str] | None, environ: dict[str, str]) -> argparse.Namespace:
    parser = OneLineParser(prog=PROG, description=(
        "Post TEXT (the words joined by spaces) as one message, or, without TEXT, each line of "
        "stdin as a message (blank lines are skipped). Prints each stored message as one JSON "
        "line. Retries on connection errors, 503 and 429 with the same idempotency key."))
    parser.add_argument("url", metavar="URL", help="the chat server, e.g. http://127.0.0.1:8888")
    parser.add_argument("text", metavar="TEXT", nargs="*", help="the message (default: stdin lines)")
    parser.add_argument("--room", type=room_argument, default="main",
                        help="the room (default: main)")
    parser.add_argument("--name", help="the nickname to post as")
    parser.add_argument("--api-key", metavar="KEY", default=environ.get("CHAT_API_KEY") or None,
                        help="post through /api/ with this key (default: env CHAT_API_KEY, which "
                             "other users of the machine cannot see; without one: the page's form)")
    args = parser.parse_intermixed_args(argv)  # TEXT may come after the options, or before
    try:
        base_url(args.url)
    except ValueError as exc:
        parser.error(str(exc))
    if args.api_key is not None and (not args.api_key or any(c.isspace() for c in args.api_key)):
        parser.error("the API key must be one word")  # never echo it
    return args


def _say(text: str) -> None:
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def _stdin_lines(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[bytes | None]:
    """Lines of stdin, read by a daemon thread so the loop (retries, signals) never waits on it."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def read() -> None:
        try:
            for line in sys.stdin.buffer:
                loop.call_soon_threadsafe(queue.put_nowait, line)
            loop.call_soon_threadsafe(queue.put_nowait, None)
        except RuntimeError:  # the loop is closed: the command is over
            pass

    threading.Thread(target=read, name="stdin", daemon=True).start()
    return queue


class Post:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.failing = False  # the state reported on stderr: retrying, or not
        self.publisher = Publisher(args.url, args.room, api_key=args.api_key,
                                   on_retry=self.retrying)
        self.failed = 0

    def retrying(self, reason: str, delay: float) -> None:
        if not self.failing:
            self.failing = True
            _say(f"not stored yet ({reason}); retrying")

    async def one(self, body: str, where: str) -> bool:
        """Post one message; False when the rest should not be tried."""
        try:
            message = await self.publisher.publish(body, name=self.args.name)
        except PublishError as exc:
            self.failed += 1
            self.failing = False
            _say(f"{where} not stored: {exc}")
            return exc.status in MESSAGE_ERRORS
        if self.failing:
            self.failing = False
            _say("stored again")
        sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
        sys.stdout.flush()
        return True

    async def run(self) -> int:
        async with self.publisher:
            if self.args.text:
                await self.one(" ".join(self.args.text), "the message")
                return 1 if self.failed else 0
            lines = _stdin_lines(asyncio.get_running_loop())
            number = 0
            while (raw := await lines.get()) is not None:
                number += 1
                try:
                    body = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    self.failed += 1
                    _say(f"line {number} not stored: not valid UTF-8")
                    continue
                if body.strip() and not await self.one(body, f"line {number}"):
                    _say("stopped; the lines after it were not posted")
                    return 1
        return 1 if self.failed else 0


async def _main(args: argparse.Namespace) -> int:
    def interrupted() -> int:
        _say("interrupted; what was printed was stored")
        return 1

    return await until_signalled(Post(args).run(), interrupted)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv, dict(os.environ))
    raise SystemExit(asyncio.run(_main(args)))


if __name__ == "__main__":
    main()
