"""History retention's rounds: a round prunes batch after batch until one comes back short, and a fleet's
replica prunes only in a round whose lock it took (taking it once a round, not once a batch)."""

from __future__ import annotations

import asyncio

from airdisplay.runtimes._retention import PRUNE_BATCH, HistoryRetention
from tests.conftest import eventually


async def test_a_round_prunes_every_batch_under_one_lock():
    batches: list[tuple[float, int]] = []
    locks = []

    async def prune(before: float, limit: int) -> bool:
        batches.append((before, limit))
        return len(batches) < 3  # two full batches, then a short one

    async def lock() -> bool:
        locks.append(True)
        return True

    retention = HistoryRetention(prune, 1.0, every=3600, first=0, clock=lambda: 200_000.0, round_lock=lock)
    retention.start()
    try:
        await eventually(lambda: len(batches) == 3, what="three batches")
    finally:
        await retention.stop()
    assert batches == [(200_000.0 - 86400, PRUNE_BATCH)] * 3
    assert locks == [True]


async def test_a_replica_without_the_rounds_lock_prunes_nothing():
    batches = []
    tried = asyncio.Event()

    async def prune(before: float, limit: int) -> bool:
        batches.append(before)
        return False

    async def lock() -> bool:
        tried.set()
        return False

    retention = HistoryRetention(prune, 1.0, every=3600, first=0, round_lock=lock)
    retention.start()
    try:
        await asyncio.wait_for(tried.wait(), 10)
        await asyncio.sleep(0)  # the round would prune now, had it the lock
    finally:
        await retention.stop()
    assert batches == []
