"""Live counters and latency samples of a simulated fleet."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

#: Why a submit was not accepted, keyed as in the summary, with the progress line's label for each.
REFUSAL_LABELS = {
    "rate_limited": "429 rate-limited",
    "busy": "409 busy",
    "auth": "401/403 auth",
    "client_error": "4xx other",
    "server_error": "5xx",
    "connection": "connection",
}


def refusal_kind(status: int | None) -> str:
    """The kind of a refused submit from its HTTP status; None is a request that got no answer."""
    if status is None:
        return "connection"
    if status == 429:
        return "rate_limited"
    if status == 409:
        return "busy"
    if status in (401, 403):
        return "auth"
    return "server_error" if status >= 500 else "client_error"


def link_failure(failure: BaseException | int) -> str:
    """The kind of a failed link: the exception's name, with the HTTP status of a refused handshake, or the
    close code after which a banner must not reconnect."""
    if isinstance(failure, int):
        return f"closed {failure}"
    status = getattr(getattr(failure, "response", None), "status_code", None)
    return type(failure).__name__ + (f" {status}" if status is not None else "")


def percentile(samples: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) of `samples` by nearest rank, or None when there are none."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class FleetStats:
    """What the simulator reports every second and at the end."""

    banners: int = 0
    connected: int = 0
    connects: int = 0
    reconnects: int = 0
    displays: int = 0
    acks: int = 0
    submits: int = 0
    #: Submits not accepted, by kind (see REFUSAL_LABELS).
    refusals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REFUSAL_LABELS, 0))
    #: Submit slots left out because every banner tried was busy or had a submit in flight.
    skipped: int = 0
    #: Device links that failed to connect or were closed for good.
    errors: int = 0
    #: Those failures by kind (`link_failure`).
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    #: Links the server closed with 1013 (it holds its most device links); they back off and retry.
    links_refused: int = 0
    #: Links a storm dropped (`Fleet.storm`), and the seconds from the drop to each one's first display.
    storm_dropped: int = 0
    restored: list[float] = field(default_factory=list)
    #: Seconds from a submit's 201 request start to the display frame reaching the banner.
    delivery: list[float] = field(default_factory=list)
    #: Seconds from a submit's request start until the banner's ack is visible on the event stream.
    round_trip: list[float] = field(default_factory=list)

    @property
    def refused(self) -> int:
        return sum(self.refusals.values())

    def count_refusal(self, status: int | None) -> str:
        """Count a submit that was not accepted (`status` None: no answer); returns its kind."""
        kind = refusal_kind(status)
        self.refusals[kind] += 1
        return kind

    def link_failed(self, kind: str) -> None:
        """Count a link that could not connect or was closed for good (`link_failure` names the kind)."""
        self.errors += 1
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1

    def line(self, rates: dict[str, float]) -> str:
        lag = percentile(self.delivery[-500:], 50)
        lag_text = "-" if lag is None else f"{lag * 1000:.1f} ms"
        kinds = ", ".join(f"{REFUSAL_LABELS[kind]} {n}" for kind, n in self.refusals.items() if n)
        return (
            f"connected {self.connected}/{self.banners} | "
            f"displays {self.displays} ({rates['displays']:.0f}/s) | "
            f"acks {self.acks} ({rates['acks']:.0f}/s) | "
            f"submits {self.submits} | refused {self.refused}{f' ({kinds})' if kinds else ''} | "
            f"delivery lag p50 {lag_text} | reconnects {self.reconnects} | link errors {self.errors}"
        )

    def summary(self) -> dict[str, object]:
        def ms(samples: list[float], q: float) -> float | None:
            value = percentile(samples, q)
            return None if value is None else round(value * 1000, 2)

        return {
            "banners": self.banners,
            "connected": self.connected,
            "displays": self.displays,
            "acks": self.acks,
            "submits": self.submits,
            "refused": self.refused,
            "refusals": dict(self.refusals),
            "skipped": self.skipped,
            "reconnects": self.reconnects,
            "errors": self.errors,
            "errors_by_kind": dict(self.errors_by_kind),
            "links_refused": self.links_refused,
            "delivery_ms": {
                "p50": ms(self.delivery, 50),
                "p99": ms(self.delivery, 99),
                "n": len(self.delivery),
            },
            "round_trip_ms": {
                "p50": ms(self.round_trip, 50),
                "p99": ms(self.round_trip, 99),
                "mean": round(statistics.fmean(self.round_trip) * 1000, 2) if self.round_trip else None,
                "n": len(self.round_trip),
            },
            **({"storm": self._storm()} if self.storm_dropped else {}),
        }

    def _storm(self) -> dict[str, object]:
        def seconds(q: float) -> float | None:
            value = percentile(self.restored, q)
            return None if value is None else round(value, 2)

        return {
            "dropped": self.storm_dropped,
            "restored": len(self.restored),
            "restored_p50_s": seconds(50),
            "restored_p99_s": seconds(99),
            "restored_max_s": seconds(100),
        }
