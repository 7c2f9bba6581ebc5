"""The simulator's garbage collector: kept young, so its pauses are not measured as the server's latency.

A simulator holding 19,800 links has ~2 million objects that live as long as the run, and each link's
heartbeat sleeps ~9 s on a timer that outlives young collections. With Python's default collector those
timers filled the old generations: passes of 150-1,500 ms, each one a spike in the delivery and ack
times the simulator reports (docs/benchmarks/results/devices.md). So, once a second, whatever is still
alive is moved out of the collector's sight (`gc.freeze`, a constant-time list splice): collections then
scan one second of objects at most. A frozen object that dies is still freed by reference counting; only
a cycle among frozen objects waits for the end of the run, when everything is unfrozen. (Counting the
frozen set to collect it now and then is itself a walk over every object: 300 ms at 19,800 links.)
"""

from __future__ import annotations

import asyncio
import gc

#: Seconds between two freezes: collections scan at most this much of the run's newest objects.
FREEZE_EVERY = 1.0


async def keep_collector_young(every: float = FREEZE_EVERY) -> None:
    """Run for as long as the fleet does (cancel it at the end); unfreezes everything when cancelled."""
    try:
        while True:
            gc.freeze()
            await asyncio.sleep(every)
    finally:
        gc.unfreeze()
