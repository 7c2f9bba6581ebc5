"""Reminders an actor type handles in batches, without activating its actors or running their turns.

An actor type may give the host a `ReminderBatching`: for the reminders it names, a pure function of the
actor's stored state that says what the reminder changes. The host then handles due reminders of actors
that are not in memory, or are in memory but idle, many at a time: it holds each of those actors for the
batch (calls to it wait, as behind a turn), reads their state in one query, applies the function, writes
the state changes and the reminders' removal in one transaction, and publishes the events after that.
Actors that are busy (a turn running or calls waiting) get their reminder in a turn of their own, as
reminders of types without batching always do.

The contract for the function: it must do exactly what the actor's `receive_reminder` would do to its
state and events for that reminder, must be idempotent (delivery is at least once), and the actor must
keep no state outside its state manager (the host changes an idle actor's stored state without a turn,
and the actor leaves memory after the batch unless calls wait for it). A reminder that needs more than the
function can do (register another reminder, read other keys) it leaves to a turn: it answers NEEDS_TURN,
and the reminder is then fired as the reminders of busy actors are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from .. import tracing
from ._activation import Activation, Activations
from ._actor import ActivationStatus
from ._records import Record, ReminderBatchWrite, ReminderRecord
from ._scheduler import ReminderScheduler
from ._store import SqliteStore
from ._traces import ReminderTraces, fired_span

log = logging.getLogger("airdisplay.actors")

#: (actor type, actor id, events of one turn or reminder) -> None: where the host hands events on.
EventSink = Callable[[str, str, list[object]], None]


@dataclass(frozen=True, slots=True)
class ReminderEffect:
    """What one reminder changes: encoded state values to set, keys to remove, events to publish."""

    state_set: tuple[tuple[str, bytes], ...] = ()
    state_removed: tuple[str, ...] = ()
    events: tuple[object, ...] = ()
    #: Records to write with the state (see `Record`).
    records: tuple[Record, ...] = ()
    #: The reminder needs a turn of the actor's own (see the module's docstring).
    needs_turn: bool = False


#: A handler's answer for a reminder it leaves to a turn.
NEEDS_TURN = ReminderEffect(needs_turn=True)

#: Reminders a batch handles before it lets the event loop run what waits: a banner's expiry takes ~38 us
#: on the VM of docs/benchmarks/results/booking_switches.md, so a batch of 250 in one go held the loop
#: ~10 ms, and an urgent turn's next step (a booking starting on time) waited behind it.
HANDLE_SLICE = 50


#: (the due reminder, the actor's stored values of `ReminderBatching.keys` (encoded), the host's clock)
#: -> what it changes, or None when it changes nothing (the reminder is still retired).
BatchHandler = Callable[[ReminderRecord, Mapping[str, bytes], float], "ReminderEffect | None"]


@dataclass(frozen=True, slots=True)
class ReminderBatching:
    """How an actor type handles some of its one-shot reminders in batches (see the module docstring)."""

    #: Names of the one-shot reminders handled this way; periodic reminders always get a turn.
    names: frozenset[str]
    #: State keys the handler reads; only these are loaded for it.
    keys: tuple[str, ...]
    handle: BatchHandler


class Claim:
    """One reminder of a batch and the actor the batch holds for it."""

    __slots__ = ("record", "act", "batching", "resident", "stored", "effect")

    def __init__(self, record: ReminderRecord, act: Activation, batching: ReminderBatching) -> None:
        self.record = record
        self.act = act
        self.batching = batching
        self.resident = act.status is ActivationStatus.ACTIVE
        self.stored: dict[str, bytes] = {}
        self.effect: ReminderEffect | None = None


class ReminderBatches:
    """Runs the host's reminder batches: holds idle actors, reads, applies, writes once, then publishes.

    It shares the host's table of activations, store and scheduler; the host decides which due reminders
    go into a batch (`claim` says whether an actor can be held) and runs the rest as turns.
    """

    def __init__(
        self,
        active: Activations,
        store: SqliteStore,
        scheduler: ReminderScheduler,
        *,
        clock: Callable[[], float],
        event_sink: EventSink | None,
        deactivate: Callable[[tuple[str, str]], Awaitable[None]],
        reminder_traces: ReminderTraces | None = None,
    ) -> None:
        self._active = active
        self._reminder_traces: ReminderTraces = {} if reminder_traces is None else reminder_traces
        self._store = store
        self._scheduler = scheduler
        self._clock = clock
        self._event_sink = event_sink
        self._deactivate = deactivate

    async def claim(self, record: ReminderRecord, batching: ReminderBatching) -> Claim | None:
        """Hold the reminder's actor for a batch if it is not in memory, or in memory and idle; None if busy.

        Returns without giving up the loop: the lock is free and nobody waits for it, so acquiring it
        does not suspend, and no other task can slip in between the check and the claim.
        """
        key = (record.actor_type, record.actor_id)
        act = self._active.get(key)
        if act is None:
            act = self._active[key] = Activation(key)  # a placeholder: NEW, activated by a waiting call
        elif act.status is not ActivationStatus.ACTIVE or act.waiting or act.lock.locked():
            return None
        status = act.status
        await act.lock.acquire()
        if act.status is not status or self._active.get(key) is not act:  # only if acquire() suspended
            act.lock.release()
            return None
        return Claim(record, act, batching)

    async def run(
        self, claims: list[Claim], on_turn: Callable[[ReminderRecord], None]
    ) -> list[ReminderRecord]:
        """Handle reminders of held actors together: one read, one transaction; then events, then release.
        Returns the reminders that failed (to retry). `on_turn` hears at once of each reminder the handler
        left to a turn, its actor released, so that its turn need not wait for the batch's write (a
        booking starting on time: bench/expiries.py --queued)."""
        try:
            await self._read_claimed(claims)
        except Exception:
            log.exception(
                "reading the state of %d actors for a reminder batch failed; will retry", len(claims)
            )
            self._release_claims(claims)
            return [claim.record for claim in claims]
        now = self._clock()
        write = ReminderBatchWrite()
        handled: list[Claim] = []
        failed: list[ReminderRecord] = []
        for index, claim in enumerate(claims):
            if index and index % HANDLE_SLICE == 0:
                try:
                    await asyncio.sleep(0)  # let the loop run what waits (see HANDLE_SLICE)
                except asyncio.CancelledError:
                    self._release_claims(handled + claims[index:])
                    raise
            record = claim.record
            try:
                claim.effect = effect = claim.batching.handle(record, claim.stored, now)
            except Exception:
                log.exception(
                    "reminder %s of %s/%s failed; will retry", record.name, record.actor_type, record.actor_id
                )
                failed.append(record)
                self._release_claims([claim])
                continue
            if effect is not None and effect.needs_turn:
                self._release_claims([claim])
                on_turn(record)
                continue
            write.fired.append(record)
            if effect is not None:
                who = (record.actor_type, record.actor_id)
                write.state_set.extend((*who, key, value) for key, value in effect.state_set)
                write.state_removed.extend((*who, key) for key in effect.state_removed)
                write.records.extend((*who, record) for record in effect.records)
            handled.append(claim)
        if not handled:
            return failed
        pending = self._store.write_batch(write)
        try:
            await asyncio.shield(pending)
        except asyncio.CancelledError:
            # The write lands or fails as a whole whatever happens to this task; follow it first.
            with contextlib.suppress(Exception):
                await pending
            self._finish_batch(handled, pending)
            raise
        except Exception:
            pass  # _finish_batch sees the failure on the future
        not_written = self._finish_batch(handled, pending)
        if not_written:
            return failed + not_written
        await self._evict_idle(handled)
        return failed

    async def _read_claimed(self, claims: list[Claim]) -> None:
        """Fill in each claim's stored state: from memory for resident actors, else one read per type."""
        cold: dict[str, list[Claim]] = {}
        for claim in claims:
            if claim.resident:
                claim.stored = claim.act.ctx.state.stored(claim.batching.keys)
            else:
                cold.setdefault(claim.record.actor_type, []).append(claim)
        for actor_type, group in cold.items():
            ids = [claim.record.actor_id for claim in group]
            states = await self._store.read_actors(actor_type, ids, group[0].batching.keys)
            for claim in group:
                claim.stored = states.get(claim.record.actor_id, {})

    def _finish_batch(self, handled: list[Claim], pending: asyncio.Future[bool]) -> list[ReminderRecord]:
        """After the batch's write: publish and release on success, release unchanged on failure."""
        error = None if pending.cancelled() else pending.exception()
        if pending.cancelled() or error is not None:
            log.error("writing a reminder batch of %d failed; will retry: %s", len(handled), error)
            self._release_claims(handled)
            return [claim.record for claim in handled]
        sink = self._event_sink
        for claim in handled:
            record, effect = claim.record, claim.effect
            self._scheduler.committed(record.actor_type, record.actor_id, (), (), fired=record)
            setter = self._reminder_traces.pop(record.key, None) if tracing.enabled else None
            if effect is None:
                continue
            if claim.resident:
                claim.act.ctx.state.apply_stored(effect.state_set, effect.state_removed)
            if effect.events and sink is not None:
                try:
                    if tracing.enabled:
                        with fired_span(record, setter):
                            sink(record.actor_type, record.actor_id, list(effect.events))
                    else:
                        sink(record.actor_type, record.actor_id, list(effect.events))
                except Exception:
                    log.exception("event sink failed for %s/%s", record.actor_type, record.actor_id)
        self._release_claims(handled)
        return []

    def _release_claims(self, claims: list[Claim]) -> None:
        """Let go of the batch's actors; placeholders nobody waits for leave memory at once.

        A placeholder somebody waits for stays NEW: the waiting call activates it from the store.
        """
        active = self._active
        for claim in claims:
            act = claim.act
            if not claim.resident and act.waiting == 0:
                act.status = ActivationStatus.DEACTIVATED
                if active.get(act.key) is act:
                    del active[act.key]
            act.lock.release()

    async def _evict_idle(self, handled: list[Claim]) -> None:
        """Deactivate the batch's resident actors that nobody has called since.

        Their reminder was their last piece of work for now: keeping them until the idle timeout would
        keep every banner of a wave in memory, where memory must follow active banners, not due ones.
        """
        for claim in handled:
            if claim.resident:
                await self._deactivate((claim.record.actor_type, claim.record.actor_id))
