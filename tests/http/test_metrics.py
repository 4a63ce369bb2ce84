"""GET /metrics and /healthz."""

from __future__ import annotations

import asyncio

import pytest

from ..support import Chat, FakeClock, with_settings


@pytest.fixture
def store_url() -> str:
    """The metrics' names, format and cache are the web layer's: one store for this module
    (conftest runs the store's own tests on each)."""
    return "memory"


async def test_metric_names_and_types(chat: Chat) -> None:
    response = await chat.client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    for name, kind in [("chat_stream_clients", "gauge"), ("chat_poll_waiters", "gauge"),
                       ("chat_messages_published_total", "counter"),
                       ("chat_deliveries_total", "counter"),
                       ("chat_slow_clients_dropped_total", "counter")]:
        assert f"# TYPE {name} {kind}" in text
        assert f"\n{name} 0.0\n" in text
    assert "process_resident_memory_bytes" in text


async def test_values_follow_traffic(chat: Chat) -> None:
    first = await chat.post("one")
    async with chat.stream(last_event_id="earliest") as s:
        await s.messages(1)
        poll = asyncio.create_task(chat.poll(cursor=first["id"]))
        await chat.until_metric("chat_poll_waiters", 1)
        assert await chat.metric("chat_stream_clients") == 1
        await chat.post("two")
        await poll
        await s.messages(1)
    assert await chat.metric("chat_messages_published_total") == 2
    # one replayed + one live on the stream, one on the poll
    assert await chat.metric("chat_deliveries_total") == 3
    await chat.until_metric("chat_stream_clients", 0)
    assert await chat.metric("chat_poll_waiters") == 0


@pytest.mark.fake_clock
@pytest.mark.parametrize("settings", [with_settings(metrics_cache=2.0)], ids=["cache-2s"])
async def test_the_text_is_made_again_once_it_is_the_cache_age_old(chat: Chat,
                                                                   clock: FakeClock) -> None:
    assert await chat.metric("chat_messages_published_total") == 0
    await chat.post("one")
    assert await chat.metric("chat_messages_published_total") == 0  # the text made before it
    clock.advance(1.5)
    assert await chat.metric("chat_messages_published_total") == 0
    clock.advance(0.5)
    assert await chat.metric("chat_messages_published_total") == 1  # 2 s old: made again
    await chat.post("two")
    assert await chat.metric("chat_messages_published_total") == 1


async def test_healthz(chat: Chat) -> None:
    response = await chat.client.get("/healthz")
    assert (response.status, await response.text()) == (200, "ok")
