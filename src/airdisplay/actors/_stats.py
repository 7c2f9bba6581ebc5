"""What the actor runtime measures about itself, for the operator's /metrics.

The histograms live in a registry of the host's own, which the app's metrics include (api/_metrics.py):
the runtime knows nothing of the app, and tests run many hosts in one process. They are FastHistograms
(airdisplay/histogram.py): a few observations per turn at ~0.2 us each, no lock.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry

from ..histogram import FastHistogram, HistogramChild

#: Seconds: a turn with a durable write takes ~0.3-3 ms here (an fsync each group commit), more under load.
TURN_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
#: Writes in one group commit: one when calls come one at a time, up to MAX_BATCH (_store.py) under load.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 10_000)
#: Seconds a reminder fired after its due time: the scheduler wakes on time, so anything past a few ms is
#: a loop that was busy or a backlog after a restart.
LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0, 300.0)


class RuntimeStats:
    """The actor host's histograms: turns, group commits and reminders."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.turn_seconds = FastHistogram(
            "airdisplay_actor_turn_duration_seconds",
            "Actor turns by method: seconds from the turn's start to its write being durable",
            ["method"],
            buckets=TURN_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = FastHistogram(
            "airdisplay_store_commit_duration_seconds",
            "Group commits to SQLite: seconds for the transaction, its fsync included",
            buckets=TURN_BUCKETS,
            registry=self.registry,
        )
        self.commit_writes = FastHistogram(
            "airdisplay_store_commit_batch_size",
            "Group commits to SQLite: turn writes and reminder batches in one transaction",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.reminder_lateness = FastHistogram(
            "airdisplay_reminder_lateness_seconds",
            "Reminders (message expiries) fired: seconds after their due time",
            buckets=LATENESS_BUCKETS,
            registry=self.registry,
        )
        self._turns: dict[object, HistogramChild] = {}

    def turn_timer(self, method: Callable[..., object]) -> HistogramChild:
        """The histogram child for turns of `method` (cached by the function itself)."""
        child = self._turns.get(method)
        if child is None:
            child = self._turns[method] = self.turn_seconds.labels(getattr(method, "__name__", "other"))
        return child
