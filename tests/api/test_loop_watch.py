"""The event-loop watch (api/_loop_watch.py): a stalled loop and a collector pause show on /metrics."""

from __future__ import annotations

import asyncio
import gc
import re
import time

from prometheus_client import CollectorRegistry, generate_latest

from airdisplay.api._loop_watch import LoopWatch
from tests.conftest import eventually


def sample(text: str, name: str, labels: str = "") -> float:
    found = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    assert found, f"{name}{labels} not in the metrics"
    return float(found.group(1))


def full_passes(registry: CollectorRegistry) -> float:
    text = generate_latest(registry).decode()
    return sample(text, "airdisplay_gc_pause_seconds_count", '{generation="2"}')


async def test_a_blocked_loop_is_recorded_as_its_longest_stall() -> None:
    watch = LoopWatch(CollectorRegistry(), interval=0.005)
    watch.start()
    try:
        await asyncio.sleep(0.02)  # the watch is waiting on its timer
        time.sleep(0.15)  # noqa: ASYNC251 - the point: a callback that holds the loop
        await eventually(lambda: watch.longest_stall >= 0.1)
        assert watch.longest_stall < 5
    finally:
        await watch.stop()


async def test_collector_pauses_are_counted_by_generation_while_running_only() -> None:
    registry = CollectorRegistry()
    watch = LoopWatch(registry)
    watch.start()
    try:
        gc.collect()
        assert full_passes(registry) >= 1
    finally:
        await watch.stop()
    assert watch._on_gc not in gc.callbacks  # a stopped app leaves no hook behind in the process
    before = full_passes(registry)
    gc.collect()
    assert full_passes(registry) == before


async def test_the_server_exports_loop_lag_and_collector_pauses(server) -> None:
    async def lag_observed() -> float:
        text = (await server.client.get("/metrics")).text
        return sample(text, "airdisplay_event_loop_lag_seconds_count")

    await eventually(lag_observed, what="a lag sample on /metrics")
    text = (await server.client.get("/metrics")).text
    assert "# TYPE airdisplay_gc_pause_seconds histogram" in text
    assert sample(text, "airdisplay_event_loop_longest_stall_seconds") >= 0
