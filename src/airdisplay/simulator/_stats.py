"""Live counters and latency samples of a simulated fleet."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field


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
    refused: int = 0
    errors: int = 0
    #: Seconds from a submit's 201 request start to the display frame reaching the banner.
    delivery: list[float] = field(default_factory=list)
    #: Seconds from a submit's request start until the banner's ack is visible on the event stream.
    round_trip: list[float] = field(default_factory=list)

    def line(self, rates: dict[str, float]) -> str:
        lag = percentile(self.delivery[-500:], 50)
        lag_text = "-" if lag is None else f"{lag * 1000:.1f} ms"
        return (
            f"connected {self.connected}/{self.banners} | "
            f"displays {self.displays} ({rates['displays']:.0f}/s) | "
            f"acks {self.acks} ({rates['acks']:.0f}/s) | "
            f"submits {self.submits} | delivery lag p50 {lag_text} | "
            f"reconnects {self.reconnects} | errors {self.errors}"
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
            "reconnects": self.reconnects,
            "errors": self.errors,
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
        }
