"""The simulator's collector policy (simulator/_collector.py): survivors frozen while it runs, none after."""

from __future__ import annotations

import asyncio
import gc

from airdisplay.simulator._collector import keep_collector_young
from tests.conftest import eventually


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


async def test_survivors_are_frozen_while_it_runs_and_unfrozen_when_cancelled() -> None:
    gc.unfreeze()
    task = asyncio.create_task(keep_collector_young(every=0.01))
    try:
        await eventually(lambda: gc.get_freeze_count() > 0, what="a freeze")
        kept = [Node() for _ in range(1000)]  # objects made after the first freeze

        def out_of_sight() -> bool:  # the collector's generations no longer hold them
            seen = {id(o) for o in gc.get_objects()}
            return not any(id(node) in seen for node in kept)

        await eventually(out_of_sight, what="the next freeze takes them")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert gc.get_freeze_count() == 0


async def test_a_cycle_left_while_frozen_is_collected_after_the_run() -> None:
    task = asyncio.create_task(keep_collector_young(every=0.01))
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a
        frozen = gc.get_freeze_count()
        await eventually(lambda: gc.get_freeze_count() > frozen, what="the pair frozen")
        del a, b  # a cycle: reference counting cannot free it, and the collector does not see it now
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert gc.collect() >= 2
