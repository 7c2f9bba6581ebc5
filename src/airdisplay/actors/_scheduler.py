"""Durable reminder scheduler: only the next page of due reminders lives in memory.

The store holds every reminder, indexed by due time. The scheduler keeps a heap of the earliest ones up
to a cursor (`horizon`); everything in the store at or before the horizon is in the heap, firing, or
already handled. When the heap runs low it reads the next page after the horizon, so a million pending
expiries cost disk, not memory, and after a restart the overdue ones come first.

Failure rules:
- Delivery is at least once: a reminder leaves the store only in the same transaction as the turn that
  handled it, so a crash in between fires it again after restart. Handlers must be idempotent.
- Due reminders go to the host in batches (up to `BATCH_SIZE`), which handles them together where it can;
  the host reports the ones that failed.
- A handler that raises is retried with backoff (in memory; the stored due time is left unchanged); in a
  batch, only the reminders that failed are retried.
- Changes to reminders reach the scheduler after they are durable (`committed`), on the event-loop thread,
  the same thread that reads pages, so a page and the change notifications can only overlap, never miss.

Urgent reminders (`prioritise`: names of an actor type whose reminder starts something a user waits for at
that second, such as a booked slot) fire ahead of the others that are due, one at a time each, with a
pipeline of their own: when a wave of ordinary ones falls due together they do not wait behind it. While
a backlog of due reminders is still in the store (the pages, in due order, have not reached now), the due
urgent ones are looked up by a partial index of their own (`SqliteStore.ensure_urgent_index`), so they do
not wait for the backlog's pages either (after a restart, or when a wave falls behind). Their turns'
writes skip the store's queue too (`SqliteStore.write(urgent=True)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace

from ._records import ReminderRecord
from ._store import SqliteStore

log = logging.getLogger("airdisplay.reminders")

#: Reminders kept in memory: a page. 5,000 rows of ~150 B: under 1 MB of memory.
PAGE_SIZE = 5000
#: Reminders read from the store at a time (on the loop's thread); the loop runs other work between two
#: reads. A read of the whole page (5,000) held the loop p50 33 / max 50 ms under an expiry wave (the
#: reader and writer threads take the GIL between its rows), in front of a booked switch's turn
#: (docs/benchmarks/results/booking_switches.md).
READ_ROWS = 1000
#: Reminders firing at once: a few batches in the pipeline (one being read, one applied, one committing).
MAX_IN_FLIGHT = 1000
#: Reminders handed to the host at once. Smaller batches free their objects sooner: on 100,000 overdue
#: expiries here, 250 (with 1,000 in flight) spent 0.44 s in the garbage collector against 0.69 s for
#: 1,000 (with 4,000), at the same or better throughput (~27k/s, one core).
BATCH_SIZE = 250
#: While the store holds due reminders that are not in memory yet (a backlog: pages come in due order), how
#: often the urgent ones among them are looked up by an index of their own, so that they do not wait for
#: the backlog's pages to reach them (seconds), and how many at most each time. A look-up of 100 among
#: 1,000,000 reminders takes ~0.5 ms (docs/benchmarks/results/booking_switches.md), 2.5% of the loop at
#: this rate; at 0.05 s, waiting for the next one was a switch's p99 41 ms from due to taken.
URGENT_SCAN_SECONDS = 0.02
URGENT_SCAN_LIMIT = 100
RETRY_FIRST_DELAY = 0.5
RETRY_MAX_DELAY = 60.0

_Key = tuple[str, str, str]
_Cursor = tuple[float, str, str, str]


#: Handles a batch of due reminders and returns the ones that failed (to be retried).
FireBatch = Callable[[list[ReminderRecord]], Awaitable[list[ReminderRecord]]]


class ReminderScheduler:
    """Fires stored reminders at their due time through `fire`, a callback that handles a batch of them."""

    def __init__(
        self,
        store: SqliteStore,
        fire: FireBatch,
        *,
        clock: Callable[[], float],
        page_size: int = PAGE_SIZE,
        max_in_flight: int = MAX_IN_FLIGHT,
        batch_size: int = BATCH_SIZE,
        lateness: Callable[[float], None] | None = None,
    ) -> None:
        self._store = store
        #: Told how late (seconds after due) each reminder fires: a metric.
        self._lateness = lateness
        self._fire = fire
        self._clock = clock
        self._page_size = page_size
        self._max_in_flight = max_in_flight
        self._batch_size = batch_size
        self._firing = 0
        self._heap: list[tuple[float, int, ReminderRecord]] = []
        #: The urgent ones (`prioritise`), apart from the others, and their own count in flight.
        self._urgent: list[tuple[float, int, ReminderRecord]] = []
        self._urgent_names: set[tuple[str, str]] = set()
        self._firing_urgent = 0
        #: What selects the urgent reminders in the store (set at `start`), and when to look them up next.
        self._urgent_condition: str | None = None
        self._next_urgent_scan = 0.0
        self._seq = itertools.count()
        self._scheduled: dict[_Key, ReminderRecord] = {}
        self._in_flight: dict[_Key, ReminderRecord] = {}
        self._failures: dict[_Key, int] = {}
        self._horizon: _Cursor | None = None
        self._exhausted = False
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start firing; the store must be open."""
        self._urgent_condition = self._store.ensure_urgent_index(self._urgent_names)
        self._runner = asyncio.create_task(self._run(), name="airdisplay-reminders")

    async def stop(self) -> None:
        """Stop firing; reminder turns already running finish first."""
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def in_memory(self) -> int:
        """Reminders held in memory (scheduled or firing): bounded by about twice the page size."""
        return len(self._scheduled) + len(self._in_flight)

    def prioritise(self, actor_type: str, names: Iterable[str]) -> None:
        """Make reminders `names` of `actor_type` urgent (see the module docstring); before `start`."""
        self._urgent_names.update((actor_type, name) for name in names)

    def is_urgent(self, record: ReminderRecord) -> bool:
        return (record.actor_type, record.name) in self._urgent_names

    # -- notifications from the host ---------------------------------------------------------------

    def is_current(self, record: ReminderRecord) -> bool:
        """True while `record` is the registration being fired (not replaced or removed since)."""
        return self._in_flight.get(record.key) is record

    def committed(
        self,
        actor_type: str,
        actor_id: str,
        added: Iterable[ReminderRecord],
        removed: Iterable[str],
        fired: ReminderRecord | None = None,
        next_due: float | None = None,
    ) -> None:
        """Apply reminder changes that just became durable."""
        for name in removed:
            key = (actor_type, actor_id, name)
            self._scheduled.pop(key, None)
            self._in_flight.pop(key, None)
        for record in added:
            self._in_flight.pop(record.key, None)
            self._failures.pop(record.key, None)
            self._schedule(record)
        if fired is not None and self._in_flight.get(fired.key) is fired:
            del self._in_flight[fired.key]
            self._failures.pop(fired.key, None)
            if next_due is not None:
                self._schedule(replace(fired, due_at=next_due))

    def failed(self, record: ReminderRecord) -> None:
        """The turn for `record` raised: try again later with exponential backoff."""
        if self._in_flight.get(record.key) is not record:
            return
        del self._in_flight[record.key]
        attempts = self._failures[record.key] = self._failures.get(record.key, 0) + 1
        delay = min(RETRY_FIRST_DELAY * 2 ** (attempts - 1), RETRY_MAX_DELAY)
        self._push(record, self._clock() + delay)

    # -- internals ---------------------------------------------------------------------------------

    def _schedule(self, record: ReminderRecord) -> None:
        if not self._exhausted and (self._horizon is None or record.cursor > self._horizon):
            return  # beyond what is in memory: a later page reads it from the store
        self._push(record, record.due_at)
        if len(self._scheduled) > 2 * self._page_size:
            self._shrink()

    def _push(self, record: ReminderRecord, fire_at: float) -> None:
        heap = self._urgent if self.is_urgent(record) else self._heap
        earliest = heap[0][0] if heap else None
        self._scheduled[record.key] = record
        heapq.heappush(heap, (fire_at, next(self._seq), record))
        if earliest is None or fire_at < earliest:
            self._wake.set()

    def _shrink(self) -> None:
        """Keep the earliest page in memory and leave the rest to the store (they are all durable there)."""
        keep = sorted(self._scheduled.values(), key=lambda r: r.cursor)[: self._page_size]
        self._scheduled = {r.key: r for r in keep}
        self._heap, self._urgent = [], []
        for record in keep:
            (self._urgent if self.is_urgent(record) else self._heap).append(
                (record.due_at, next(self._seq), record)
            )
        heapq.heapify(self._heap)
        heapq.heapify(self._urgent)
        self._horizon = keep[-1].cursor
        self._exhausted = False

    def _refill(self) -> None:
        """Read the next reminders after the horizon (READ_ROWS at most) and move the horizon past them:
        on the loop's thread, in one go, so that no change notification (`committed`) falls in between."""
        limit = min(self._page_size, READ_ROWS)
        rows = self._store.page_reminders(self._horizon, limit)
        for record in rows:
            if not self._known(record):
                self._push(record, record.due_at)
        if rows:
            self._horizon = rows[-1].cursor
        self._exhausted = len(rows) < limit

    def _known(self, record: ReminderRecord) -> bool:
        """True if `record` (as read from the store) is already in memory, scheduled or firing."""
        return any(
            known is not None and known.due_at == record.due_at
            for known in (self._in_flight.get(record.key), self._scheduled.get(record.key))
        )

    def _wants_page(self) -> bool:
        """True while fewer than half a page is in memory (scheduled or firing) and the store may hold more.

        Firing ones count: a page read while the last one is still firing would hold both, and memory would
        grow with the in-flight limit rather than the page size."""
        return not self._exhausted and len(self._scheduled) + len(self._in_flight) < self._page_size // 2

    def _scan_urgent(self, now: float) -> float | None:
        """While a backlog of due reminders is still in the store, bring the urgent ones among them into
        memory (every URGENT_SCAN_SECONDS); returns the seconds to the next look-up (None: no backlog)."""
        behind = not self._exhausted and self._horizon is not None and self._horizon[0] <= now
        if self._urgent_condition is None or not behind:
            return None
        wait = self._next_urgent_scan - time.monotonic()
        if wait > 0:
            return wait
        for record in self._store.due_urgent_reminders(self._urgent_condition, now, URGENT_SCAN_LIMIT):
            if not self._known(record):
                self._push(record, record.due_at)
        self._next_urgent_scan = time.monotonic() + URGENT_SCAN_SECONDS
        return URGENT_SCAN_SECONDS

    async def _run(self) -> None:
        while True:
            while self._wants_page():
                self._refill()
                if self._wants_page():
                    await asyncio.sleep(0)  # let the loop run what waits before the next read
            now = self._clock()
            scan_in = self._scan_urgent(now)
            urgent = self._urgent
            while urgent and urgent[0][0] <= now and self._firing_urgent < self._max_in_flight:
                _, _, record = heapq.heappop(urgent)
                if self._take(record, now):
                    self._firing_urgent += 1
                    self._start([record], urgent=True)
            heap = self._heap
            while heap and heap[0][0] <= now and self._firing < self._max_in_flight:
                batch: list[ReminderRecord] = []
                room = min(self._batch_size, self._max_in_flight - self._firing)
                while heap and heap[0][0] <= now and len(batch) < room:
                    _, _, record = heapq.heappop(heap)
                    if self._take(record, now):
                        batch.append(record)
                if batch:
                    self._firing += len(batch)
                    self._start(batch, urgent=False)
            if self._wants_page():
                # Under half a page in memory even counting those firing (a page smaller than twice the
                # in-flight limit fired at once): read the next one now rather than wait for a wake.
                continue
            heads = []
            if heap and self._firing < self._max_in_flight:
                heads.append(heap[0][0])
            if urgent and self._firing_urgent < self._max_in_flight:
                heads.append(urgent[0][0])
            timeout = max(min(heads) - self._clock(), 0.0) if heads else None
            if scan_in is not None:
                timeout = scan_in if timeout is None else min(timeout, scan_in)
            self._wake.clear()
            if timeout is None or timeout > 0:
                # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that comes as the event is set
                # (a reminder committed just before `stop`), and stop then waited for the next due time.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()

    def _take(self, record: ReminderRecord, now: float) -> bool:
        """Move a record popped from a heap to the ones firing; False if it is no longer scheduled."""
        if self._scheduled.get(record.key) is not record:
            return False  # replaced, removed or already firing
        del self._scheduled[record.key]
        self._in_flight[record.key] = record
        if self._lateness is not None:
            self._lateness(now - record.due_at)
        return True

    def _start(self, batch: list[ReminderRecord], *, urgent: bool) -> None:
        task = asyncio.create_task(self._fire_batch(batch, urgent))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fire_batch(self, batch: list[ReminderRecord], urgent: bool) -> None:
        try:
            failed = await self._fire(batch)
        except Exception:
            log.exception("a batch of %d reminders failed; will retry", len(batch))
            failed = batch
        finally:
            if urgent:
                if self._firing_urgent >= self._max_in_flight:
                    self._wake.set()
                self._firing_urgent -= len(batch)
            else:
                if self._firing >= self._max_in_flight:
                    self._wake.set()  # room frees up for due reminders that were waiting
                self._firing -= len(batch)
        for record in failed:
            self.failed(record)
        if self._wants_page():
            # The page fired (fewer than the in-flight limit, so the check above did not wake the loop)
            # and its reminders left memory: the loop waits for this to read the next page.
            self._wake.set()
