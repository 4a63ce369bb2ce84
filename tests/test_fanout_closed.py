"""A subscriber whose connection closed before its handler unsubscribed it (uvloop raises then)."""

from __future__ import annotations

from chat.fanout import Hub
from chat.message import Message


class Transport:
    def __init__(self, closed: bool = False) -> None:
        self.data = bytearray()
        self.closed = closed
        self.writing_paused = False  # plays the protocol's part too

    def write(self, data: bytes) -> None:
        if self.closed:  # what uvloop's transport does once its handle is closed
            raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")
        self.data += data

    def get_extra_info(self, name: str) -> object:
        return None


def message(seq: int) -> Message:
    return Message("e", (seq,), "main", f"b{seq}", None, 0.0, "<div></div>")


async def test_publish_and_ping_skip_a_closed_transport_and_reach_the_rest() -> None:
    hub = Hub(queue_size=10)
    transports = [Transport(closed=i == 1) for i in range(3)]
    for t in transports:
        hub.subscribe("main", t, t, True).direct = True  # type: ignore[arg-type]
    hub.publish(message(1))
    hub.ping()
    for i in (0, 2):
        assert bytes(transports[i].data).startswith(message(1).sse_chunk)
        assert len(transports[i].data) > len(message(1).sse_chunk)  # and the heartbeat
    assert hub.deliveries == 2
