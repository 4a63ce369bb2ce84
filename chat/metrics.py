"""Prometheus metrics: one registry per application, collected from the Hub at scrape time.

The hot counters (published, deliveries, drops) are plain integers on the Hub, read only when
/metrics is scraped, so fan-out never takes a metrics lock per delivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .fanout import Hub


class HubCollector(Collector):
    def __init__(self) -> None:
        self.hub: Hub | None = None

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        if hub is None:
            return
        yield GaugeMetricFamily("chat_stream_clients", "Open SSE stream clients.",
                                value=hub.stream_clients)
        yield GaugeMetricFamily("chat_poll_waiters", "Long-poll requests waiting for a message.",
                                value=hub.poll_waiters)
        yield CounterMetricFamily("chat_messages_published", "Messages this process fanned out.",
                                  value=hub.published)
        yield CounterMetricFamily("chat_deliveries", "Messages written to stream or poll clients.",
                                  value=hub.deliveries)
        yield GaugeMetricFamily("chat_asyncio_tasks", "Tasks alive on this process's event loop.",
                                value=len(asyncio.all_tasks()))
        yield CounterMetricFamily("chat_slow_clients_dropped",
                                  "Stream clients disconnected because their queue overflowed.",
                                  value=hub.slow_dropped)


class Metrics:
    """One registry per application, so several apps (tests, workers) never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.hub_collector = HubCollector()
        self.registry.register(self.hub_collector)
        ProcessCollector(registry=self.registry)

    def watch(self, hub: Hub | None) -> None:
        self.hub_collector.hub = hub

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
