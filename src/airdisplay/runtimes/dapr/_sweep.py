"""The expiry sweep: the backstop that takes a message off when its reminder gave up.

A Dapr Scheduler reminder whose delivery fails is retried 3 times about a second apart and then deleted
(Dapr 1.18; the SDK's failure-policy setting does not reach daprd). After ~4 s of trouble (Redis down, a
replica dying during the rebalance) the message would stay on the banner for good. So every replica runs
this loop: every SWEEP_SECONDS it reads from the fleet directory the banners whose message was due more
than GRACE_SECONDS ago and calls their actor's `Expire`, which acts only on a message whose time is up.

A Redis lock lets one replica sweep per round; if it dies, another takes the next round. In the normal
case the reminder has fired long before and the sweep finds nothing. Bound: a message whose reminder gave
up leaves its banner at most GRACE_SECONDS + SWEEP_SECONDS (plus the calls) after its expiry.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from ...logs import about
from ._directory import RedisDirectory

log = logging.getLogger("airdisplay.dapr.sweep")

#: Rounds are this far apart. A reminder gives up ~4 s after its due time, so a shorter round buys little.
SWEEP_SECONDS = 5.0
#: A message is swept only this long after its expiry: its reminder normally fires within a second.
GRACE_SECONDS = 2.0
#: Banners expired per round at most; the rest wait for the next round (soonest due first).
SWEEP_BATCH = 500

ExpireCall = Callable[[str, str], Awaitable[object]]


class ExpirySweep:
    """Runs the sweep loop while started; `sweep_once` is one round (also for tests)."""

    def __init__(self, directory: RedisDirectory, expire: ExpireCall, every: float = SWEEP_SECONDS) -> None:
        self._directory = directory
        self._expire = expire
        self._every = every
        self._holder = uuid.uuid4().hex
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="airdisplay-dapr-expiry-sweep")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def sweep_once(self, now: float | None = None) -> int:
        """Expire what is overdue; the number of banners asked."""
        due = await self._directory.overdue((now or time.time()) - GRACE_SECONDS, SWEEP_BATCH)
        asked = 0
        for banner in due:
            if banner.message is None:
                continue
            try:
                await self._expire(banner.id, banner.message.id)
                asked += 1
            except Exception as exc:  # one banner's trouble must not stop the round
                log.warning("expiry sweep could not expire %s: %s", banner.id, exc, extra=about(banner.id))
        if asked:
            log.info("expiry sweep expired %d message(s) whose reminder did not", asked)
        return asked

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                if await self._directory.try_lock("expiry-sweep", self._holder, self._every * 0.9):
                    await self.sweep_once()
            except Exception as exc:  # Redis away: try again next round
                log.warning("expiry sweep round failed: %s", exc)
