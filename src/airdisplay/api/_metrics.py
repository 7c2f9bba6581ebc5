"""Service metrics in the Prometheus text format, for the operator's `GET /metrics`.

Each app has its own registry (tests run many apps in one process). Counters are bumped on the
request path; gauges are read from the runtime and the realtime hubs when scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..realtime import Subscriber

Gauges = Callable[[], dict[str, float]]


# No `*_created` series beside every counter and histogram: they doubled the page and no dashboard reads
# them. A process-wide switch of prometheus_client; this package is its only user in the server.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: What each gauge read at scrape time means (docs/observability.md has them all).
GAUGE_HELP = {
    "actors_active": "Banner actors in memory now (activated, not yet idle long enough to leave)",
    "actors_pinned": "Banner actors kept in memory because their device is linked or bookings wait",
    "reminders_in_memory": "Reminders (message expiries) the scheduler holds in memory, due soonest",
    "store_writable": "1 while the store takes writes, 0 while it refuses them (disk full, failing disk)",
    "store_queued_writes": "Turn writes waiting for the writer thread's next group commit",
    "streams_open": "WebSocket and SSE streams open now",
    "device_links": "Device links open now",
    "event_loop_longest_stall_seconds": "The longest the event loop ran late since start",
}


class _GaugeCollector(Collector):
    def __init__(self, read: Gauges) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        for name, value in sorted(self._read().items()):
            yield GaugeMetricFamily(f"airdisplay_{name}", GAUGE_HELP.get(name, name), value=value)


class ServiceMetrics:
    """The counters of one AirDisplay app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        # process_resident_memory_bytes, process_cpu_seconds_total, process_open_fds (links need them).
        ProcessCollector(registry=self.registry)
        self.messages = Counter(
            "airdisplay_messages",
            "Message submits by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.accepted = self.messages.labels("accepted")
        self.busy = self.messages.labels("busy")
        self.refused_content = self.messages.labels("blocked_text")
        self.rate_limited = self.messages.labels("rate_limited")
        self.auth_failures = Counter(
            "airdisplay_auth_failures", "Requests refused with 401 or 403", registry=self.registry
        )
        self.streams_refused = Counter(
            "airdisplay_streams_refused", "Streams refused: client at its limit", registry=self.registry
        )
        #: Counted by the server's HTTP protocol (cli/_connections.py), below the app.
        self.connections_refused = Counter(
            "airdisplay_connections_refused",
            "Connections answered and closed by a connection limit, by reason: too_many_connections, "
            "uri_too_long, header_too_large, header_timeout",
            ["reason"],
            registry=self.registry,
        )
        self.device_links_refused = Counter(
            "airdisplay_device_links_refused",
            "Device links closed with 1013: the process held as many as --max-device-links allows",
            registry=self.registry,
        )
        self.device_links_over_budget = Counter(
            "airdisplay_device_links_over_budget",
            "Device links closed with 4429: more frames than their budget",
            registry=self.registry,
        )
        self.coalesced = Counter(
            "airdisplay_outbox_coalesced",
            "Times a connection's outbox kept only the newest frame per banner because its client fell "
            "behind (lossless for state), by channel: websocket, sse, device",
            ["channel"],
            registry=self.registry,
        )
        self.slow_clients = Counter(
            "airdisplay_slow_clients_cut_off",
            "Connections ended because their client stopped reading for stall_seconds or fell too far behind "
            "even coalesced (WebSocket and device links: 4008), by channel: websocket, sse, device",
            ["channel"],
            registry=self.registry,
        )

    def outbox(self, channel: str, send_buffer: int) -> Subscriber:
        """A subscriber for a connection of `channel` (websocket, sse) whose coalescing is counted."""
        return Subscriber(send_buffer, coalesce_count=self.coalesced.labels(channel).inc)

    def add_gauges(self, read: Gauges) -> None:
        self.registry.register(_GaugeCollector(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)
