"""Service metrics in the Prometheus text format, for the operator's `GET /metrics`.

Each app has its own registry (tests run many apps in one process). Counters are bumped on the
request path; gauges are read from the runtime and the realtime hubs when scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

Gauges = Callable[[], dict[str, float]]


class _GaugeCollector(Collector):
    def __init__(self, read: Gauges) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        for name, value in sorted(self._read().items()):
            yield GaugeMetricFamily(f"airdisplay_{name}", name.replace("_", " "), value=value)


class ServiceMetrics:
    """The counters of one AirDisplay app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
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
        self.slow_clients = Counter(
            "airdisplay_slow_clients_cut_off",
            "Connections ended because their client stopped reading for stall_seconds or fell too far behind "
            "even coalesced (WebSocket and device links: 4008), by channel: websocket, sse, device",
            ["channel"],
            registry=self.registry,
        )

    def add_gauges(self, read: Gauges) -> None:
        self.registry.register(_GaugeCollector(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)
