"""Hub: direct writes when caught up, bounded queue under back-pressure, drops, waiters, close;
and, on real sockets, a publish that meets a client whose connection is already gone."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from chat.core.hub import CLOSE, Hub, Subscriber
from chat.core.message import PING, Message, chunk, make_message


class Transport:
    """Records writes the way asyncio's transport would take them (test scaffolding)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.aborted = False
        self.writing_paused = False  # plays the protocol's part too

    def write(self, data: bytes) -> None:
        self.data += data

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> object:
        return ("192.0.2.1", 4242) if name == "peername" else None


EPOCH = "abcdef00000001"


def message(seq: int, room: str = "main") -> Message:
    return make_message(room, EPOCH, seq, f"b{seq}", None, 0.0, lambda *_: "<div></div>")


def sse_chunk(m: Message) -> bytes:
    return chunk(m.sse())


def always(after: tuple[int, int]) -> bool:
    return True


def subscribe(hub: Hub, room: str = "main", chunked: bool = True) -> tuple[Transport, Subscriber]:
    t = Transport()
    return t, hub.subscribe(room, cast(asyncio.WriteTransport, t), t, chunked)


async def test_caught_up_subscriber_gets_ready_frames_written_directly() -> None:
    hub = Hub(queue_size=10)
    t, sub = subscribe(hub)
    sub.direct = True
    hub.deliver(message(1))
    hub.deliver(message(2))
    assert bytes(t.data) == sse_chunk(message(1)) + sse_chunk(message(2))
    assert hub.deliveries == 2


async def test_http10_subscriber_gets_unchunked_frames() -> None:
    hub = Hub(queue_size=10)
    t, sub = subscribe(hub, chunked=False)
    sub.direct = True
    hub.deliver(message(1))
    assert bytes(t.data) == message(1).sse()


async def test_one_encoding_shared_by_all_subscribers() -> None:
    hub = Hub(queue_size=10)
    subs = [subscribe(hub) for _ in range(3)]
    for _, sub in subs:
        sub.direct = True
    m = message(1)
    hub.deliver(m)
    assert all(bytes(t.data) == sse_chunk(m) for t, _ in subs)


async def test_paused_subscriber_queues_then_pump_writes_in_order() -> None:
    hub = Hub(queue_size=10)
    t, sub = subscribe(hub)
    sub.direct = True
    hub.deliver(message(1))
    t.writing_paused = True
    hub.deliver(message(2))
    hub.deliver(message(3))
    assert bytes(t.data) == sse_chunk(message(1))
    t.writing_paused = False
    drained = asyncio.Event()

    async def drain() -> None:
        drained.set()

    pump = asyncio.create_task(sub.pump(hub, drain, always))
    await drained.wait()
    assert bytes(t.data) == sse_chunk(message(1)) + chunk(message(2).sse() + message(3).sse())
    await asyncio.sleep(0)
    assert sub.direct  # caught up again: back to direct writes
    hub.deliver(message(4))
    assert bytes(t.data).endswith(sse_chunk(message(4)))
    hub.close()
    assert await pump == "shutdown"
    assert hub.deliveries == 4


async def test_pump_skips_what_the_replay_already_sent() -> None:
    hub = Hub(queue_size=10)
    t, sub = subscribe(hub)
    sub.after = message(3).key  # the replay went up to 3
    for seq in (2, 3, 4):  # delivered while the replay was being written
        hub.deliver(message(seq))

    async def drain() -> None:
        hub.close()

    reason = await sub.pump(hub, drain, always)
    assert reason == "shutdown"
    assert bytes(t.data) == chunk(message(4).sse())


async def test_queue_overflow_drops_only_the_slow_client() -> None:
    hub = Hub(queue_size=3)
    slow, slow_sub = subscribe(hub)
    fast, fast_sub = subscribe(hub)
    fast_sub.direct = True
    slow.writing_paused = True
    for seq in range(1, 4):
        hub.deliver(message(seq))
    assert not slow.aborted and slow_sub.queue.qsize() == 3
    hub.deliver(message(4))  # the fourth does not fit: disconnect
    assert slow.aborted and hub.slow_dropped == 1
    assert slow_sub.reason == "slow"
    assert slow_sub.queue.get_nowait() is CLOSE
    assert hub.stream_clients == 1
    hub.deliver(message(5))
    assert bytes(fast.data) == b"".join(sse_chunk(message(i)) for i in range(1, 6))


async def test_unsubscribe_is_idempotent_and_counts() -> None:
    hub = Hub(queue_size=3)
    _, sub = subscribe(hub)
    assert hub.stream_clients == 1 and hub.watching("main")
    hub.unsubscribe(sub)
    hub.unsubscribe(sub)
    assert hub.stream_clients == 0 and not hub.watching("main")


async def test_waiters_wake_on_their_room_only() -> None:
    hub = Hub(queue_size=3)
    main, other = hub.wait("main"), hub.wait("other")
    assert hub.poll_waiters == 2
    hub.deliver(message(1))
    assert main.done() and not other.done()
    hub.unwait("main", main)
    hub.unwait("other", other)
    assert hub.poll_waiters == 0 and not hub.watching("main") and not hub.watching("other")


async def test_ping_every_subscriber_with_nothing_queued() -> None:
    hub = Hub(queue_size=3)
    idle, idle_sub = subscribe(hub)
    idle_sub.direct = True
    waiting, _ = subscribe(hub)  # not direct (its pump waits), but nothing is queued for it
    busy, busy_sub = subscribe(hub)
    busy_sub.queue.put_nowait(message(1))
    hub.ping()
    assert bytes(idle.data) == bytes(waiting.data) == chunk(PING) and bytes(busy.data) == b""


async def test_close_ends_streams_and_wakes_waiters_and_refuses_new_ones() -> None:
    hub = Hub(queue_size=3)
    _, sub = subscribe(hub)
    fut = hub.wait("main")
    hub.close()
    assert fut.done() and sub.queue.get_nowait() is CLOSE
    assert hub.stream_clients == 0 and hub.poll_waiters == 0
    _, late = subscribe(hub)
    assert late.reason == "shutdown" and hub.stream_clients == 0
    assert hub.wait("main").done()


@pytest.mark.parametrize("body", ["line\nbreak", "\r\ndata: x\r\n\r\n", "\u2028\u2029", "\x00"])
def test_frames_stay_single_line_whatever_the_body(body: str) -> None:
    m = make_message("main", "e", 1, body, body, 0.0, lambda *_: body)
    lines = m.sse().split(b"\n")
    assert lines[0] == b"id: e-1" and lines[1] == b"event: message"
    assert lines[2].startswith(b"data: ") and lines[3:] == [b"", b""]
    assert b"\r" not in m.sse()


async def test_sweep_drops_a_subscriber_whose_socket_stays_full() -> None:
    hub = Hub(queue_size=10, stall_timeout=2.0)
    stuck, _ = subscribe(hub)
    busy, busy_sub = subscribe(hub)
    stuck.writing_paused = busy.writing_paused = True
    hub.sweep(100.0)  # first look: what the peer has acknowledged so far
    hub.sweep(101.0)  # nothing new since: stalled from here
    busy.writing_paused = False  # it drained in between: not stalled
    hub.sweep(101.5)
    hub.sweep(102.9)
    assert not stuck.aborted and hub.stream_clients == 2
    busy.writing_paused = True
    hub.sweep(103.0)  # two seconds of accepting nothing
    assert stuck.aborted and hub.dropped["stalled"] == 1 and hub.stream_clients == 1
    assert not busy.aborted and busy_sub.stalled_since == 103.0


# ---- real sockets ---------------------------------------------------------------------------
# A stream client whose connection is gone must not break a publish for everyone else. uvloop
# (what ``python -m chat`` runs on) raises RuntimeError when writing to a closed transport, and
# a client can disconnect a moment before its handler unsubscribes it.

class _Connection(asyncio.Protocol):
    writing_paused = False

    def __init__(self, made: asyncio.Queue[tuple[_Connection, asyncio.Transport]]) -> None:
        self.made = made
        self.lost = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio's, only duck-typed like them.
        self.made.put_nowait((self, cast(asyncio.Transport, transport)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


async def _publish_after_a_client_left() -> None:
    loop = asyncio.get_running_loop()
    made: asyncio.Queue[tuple[_Connection, asyncio.Transport]] = asyncio.Queue()
    server = await loop.create_server(lambda: _Connection(made), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hub = Hub(queue_size=10)
    writers: list[asyncio.StreamWriter] = []
    try:
        subs, readers = [], []
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            readers.append(reader)
            writers.append(writer)
            conn, transport = await asyncio.wait_for(made.get(), 5)
            sub = hub.subscribe("main", transport, conn, chunked=False)
            sub.direct = True  # caught up: publish writes straight to the socket
            subs.append((conn, sub))
        writers[0].transport.abort()
        await asyncio.wait_for(subs[0][0].lost.wait(), 5)  # the server saw it go; still subscribed

        message = make_message("main", "e", 1, "hi", None, 0.0, lambda *args: "<div></div>")
        hub.deliver(message)
        hub.ping()
        subs[0][1].write(b"ignored")
        frame = message.sse()
        assert await asyncio.wait_for(readers[1].readexactly(len(frame)), 5) == frame
    finally:
        for writer in writers:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


def test_publish_skips_a_client_whose_connection_is_gone() -> None:
    uvloop = pytest.importorskip("uvloop")
    uvloop.run(_publish_after_a_client_left())


def test_publish_skips_a_client_whose_connection_is_gone_on_asyncios_loop() -> None:
    asyncio.run(_publish_after_a_client_left())
