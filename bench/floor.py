"""The plainest fan-out server, as a yardstick: what this machine's kernel and Python cost at least.

    python -m bench run sse -S 1000 --server-cmd "{python} -m bench.floor --port {port}"

Raw asyncio protocol, no framework, no validation, no history beyond the last message: a stream
gets the same frame bytes as ``python -m chat`` sends (same message JSON, same HTML fragment
size), written to every socket as one pre-encoded chunk; a long-poll is answered from the same
pre-encoded body. It speaks just enough of the wire contract for the harness. Not a server to use.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import resource
import time
from typing import Any, cast

_OK = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
_STREAM_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _form(body: bytes) -> dict[str, str]:
    from urllib.parse import parse_qsl
    return dict(parse_qsl(body.decode()))


class Room:
    def __init__(self) -> None:
        self.streams: set[asyncio.Transport] = set()
        self.polls: set[Conn] = set()
        self.messages: list[tuple[bytes, bytes, bytes]] = []  # (id, json, poll body)


class Floor:
    def __init__(self) -> None:
        self.rooms: dict[str, Room] = {}
        self.epoch = "floor"

    def room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room()
        return room

    def publish(self, name: str, body: str) -> bytes:
        room = self.room(name)
        mid = f"{self.epoch}-{len(room.messages) + 1}"
        fragment = (f'<div class="message" id="m{mid}"><b>anonymous</b>: {html.escape(body)}'
                    f'<time datetime="{time.time()}">00:00</time></div>')
        data = json.dumps({"id": mid, "room": name, "body": body, "name": None, "ts": time.time(),
                           "html": fragment}, separators=(",", ":")).encode()
        frame = _chunk(b"id: %s\nevent: message\ndata: %s\n\n" % (mid.encode(), data))
        poll = b'{"messages":[%s]}' % data
        room.messages.append((mid.encode(), data, poll))
        for t in room.streams:
            t.write(frame)
        polls, room.polls = room.polls, set()
        for conn in polls:
            conn.answer(poll)
        return data


class Conn(asyncio.Protocol):
    floor: Floor

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.stream_room: Room | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stream_room is not None and self.transport is not None:
            self.stream_room.streams.discard(self.transport)
        for room in self.floor.rooms.values():
            room.polls.discard(self)

    def answer(self, body: bytes, ctype: bytes = b"application/json") -> None:
        assert self.transport is not None
        self.transport.write(_OK % (ctype, len(body), body))

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            k = head.lower().find(b"content-length:")
            length = 0
            if k >= 0:
                eol = head.find(b"\r\n", k)
                length = int(head[k + 15:eol if eol > 0 else None])
            if len(buf) < end + 4 + length:
                break
            body, buf = buf[end + 4:end + 4 + length], buf[end + 4 + length:]
            self.request(head[:head.find(b" HTTP/")], body)
        self.buf = buf

    def request(self, line: bytes, body: bytes) -> None:
        _, _, target = line.partition(b" ")
        path, _, query = target.partition(b"?")
        floor = self.floor
        assert self.transport is not None
        if path == b"/a/message/stream":
            room = floor.room(_form(query).get("room", "main"))
            self.transport.write(_STREAM_HEAD + _chunk(b"retry: 1000\n: stream open\n\n"))
            room.streams.add(self.transport)
            self.stream_room = room
        elif path == b"/a/message/new":
            form = _form(body)
            self.answer(floor.publish(form.get("room", "main"), form.get("body", "")))
        elif path == b"/a/message/updates":
            form = _form(body)
            room = floor.room(form.get("room", "main"))
            cursor = form.get("cursor", "")
            newer = room.messages[int(cursor.rsplit("-", 1)[1]) if cursor else 0:]
            if not newer:
                room.polls.add(self)
            elif len(newer) == 1:
                self.answer(newer[0][2])
            else:
                self.answer(b'{"messages":[%s]}' % b",".join(m[1] for m in newer))
        elif path == b"/metrics":
            streams = sum(len(r.streams) for r in floor.rooms.values())
            polls = sum(len(r.polls) for r in floor.rooms.values())
            self.answer(b"chat_stream_clients %d\nchat_poll_waiters %d\n" % (streams, polls), b"text/plain")
        else:
            self.answer(b"ok", b"text/plain")


async def serve(port: int) -> None:
    floor = Floor()
    Conn.floor = floor
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Conn, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def yardstick_setup(doc: str | None, argv: list[str] | None) -> tuple[int, Any]:
    """What both yardsticks start with: --port and --no-uvloop parsed, the descriptor limit
    raised; returns the port and the event loop factory to use."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    factory: Any = asyncio.new_event_loop
    if not args.no_uvloop:
        try:
            import uvloop
            factory = uvloop.new_event_loop
        except ImportError:
            pass
    return args.port, factory


def main(argv: list[str] | None = None) -> None:
    port, factory = yardstick_setup(__doc__, argv)
    with asyncio.Runner(loop_factory=factory) as runner:
        try:
            runner.run(serve(port))
        except KeyboardInterrupt:
            pass
    os._exit(0)


if __name__ == "__main__":
    main()
