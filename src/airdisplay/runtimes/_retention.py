"""History retention: entries older than `--history-days` go, a small batch at a time.

Each batch is one short write of its own (embedded: in the store's writer thread, between turns; Dapr: a
few Redis commands), and the loop yields between batches, so pruning a backlog of a million entries
never holds the event loop or the turns' writes for long (bench/history.py measures the longest stall).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("airdisplay.history")

#: A round an hour: entries are kept for days, an hour more is nothing.
PRUNE_SECONDS = 3600.0
#: The first round this soon after start: a server that was down for weeks catches up at once.
FIRST_PRUNE_SECONDS = 10.0
#: Entries per batch: one write of ~1,000 rows takes milliseconds.
PRUNE_BATCH = 1000

#: (delete entries made before this time, at most this many) -> whether it deleted that many (more left).
PruneBatch = Callable[[float, int], Awaitable[bool]]
#: () -> whether this process may prune this round (a fleet's replicas: one of them a round).
RoundLock = Callable[[], Awaitable[bool]]


class HistoryRetention:
    """Prunes history older than `days` every `every` seconds while started (days 0: keeps it all)."""

    def __init__(
        self,
        prune: PruneBatch,
        days: float,
        *,
        every: float = PRUNE_SECONDS,
        first: float = FIRST_PRUNE_SECONDS,
        clock: Callable[[], float] = time.time,
        round_lock: RoundLock | None = None,
    ) -> None:
        self._prune = prune
        self._round_lock = round_lock
        self.days = days
        self._every = every
        self._first = first
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.days > 0:
            self._task = asyncio.create_task(self._run(), name="airdisplay-history-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def prune_once(self, before: float | None = None) -> int:
        """Delete every entry older than the retention (or made before `before`), in batches; the number
        of batches."""
        if before is None:
            before = self._clock() - self.days * 86400
        batches = 0
        while True:
            batches += 1
            if not await self._prune(before, PRUNE_BATCH):
                return batches
            await asyncio.sleep(0)

    async def _run(self) -> None:
        await asyncio.sleep(self._first)
        while True:
            started = time.monotonic()
            try:
                if self._round_lock is not None and not await self._round_lock():
                    await asyncio.sleep(self._every)
                    continue
                batches = await self.prune_once()
                if batches > 1:
                    log.info(
                        "history: pruned %d batches of entries older than %g days in %.1f s",
                        batches,
                        self.days,
                        time.monotonic() - started,
                    )
            except Exception as exc:  # the store or Redis is away: the next round tries again
                log.warning("history pruning failed: %s", exc)
            await asyncio.sleep(self._every)
