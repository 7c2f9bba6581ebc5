"""The embedded actor host: activation, turns, idle deactivation and reminders over one SQLite store.

Failure rules:
- A call to an actor waits for its turn (FIFO per actor); calls to different actors run concurrently.
- If loading state or `on_activate` fails, the call fails with ActivationFailed, the activation is
  dropped and queued calls start a fresh one.
- If the method raises, or its write fails, the turn's state changes, reminders and events are thrown
  away (the actor keeps its last committed state) and the caller gets the exception.
- A method's result is returned only after its write is durable; events are handed to the sink after
  that, before the next turn of the same actor starts, so they leave in turn (version) order.
- If the caller is cancelled while the write is in flight, the write still lands or fails as a whole and
  the actor's cache follows it before the next turn.

Reminder batches (actor types with a `ReminderBatching`, see _batching.py):
- A due reminder of an actor that is not in memory, or is in memory and idle, is handled in a batch: the
  batch holds the actor for itself (a placeholder activation with its lock held, or the idle activation's
  lock), so a call that arrives meanwhile waits behind the batch, as behind a turn. Busy actors get the
  reminder in a turn of their own.
- The batch's state changes and the removal of its reminders commit in one transaction; only then does
  the batch publish each actor's events (before the actor's next turn: version order holds) and let go of
  its actors. An actor nobody waits for leaves memory then (its state is in the store); one with waiting
  calls keeps or gets an activation with the new state.
- If reading the batch's state or its write fails, nothing of it is applied: every reminder in it is
  retried with backoff, its actors keep their last committed state, and waiting calls go ahead. If the
  handler raises for one reminder, only that one is left out of the batch and retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Concatenate, ParamSpec, TypeVar, cast

from .. import tracing
from ._activation import Activation, Activations
from ._actor import ActivationStatus, Actor, ActorContext
from ._batching import Claim, EventSink, ReminderBatches, ReminderBatching
from ._records import ReminderRecord, TurnWrite
from ._scheduler import PAGE_SIZE, ReminderScheduler
from ._state import ActorStateManager
from ._stats import RuntimeStats
from ._store import SqliteStore
from ._traces import ReminderTraces, fired_span, remember_traces
from .exceptions import ActivationFailed, RuntimeClosed, UnknownActorMethod, UnknownActorType

log = logging.getLogger("airdisplay.actors")

T = TypeVar("T")
A = TypeVar("A")
P = ParamSpec("P")
ActorFactory = Callable[[ActorContext], Actor]

#: Default idle time before an actor leaves memory (Dapr's default actorIdleTimeout is 60 min). Banners
#: are many and cheap to reload (one primary-key read), and every actor in memory is ~5 objects that each
#: garbage collection walks: under 7,700 submits/s to distinct banners a 60 s timeout kept 450,000 actors
#: in memory, young collections stalled the loop up to 197 ms and a full one 1,028 ms; with 2 s at most
#: 43 ms, for a p99 of 17 ms instead of 11-13 ms (bench/loop_stalls.py, docs/benchmarks/results/).
DEFAULT_IDLE_TIMEOUT = 2.0
#: Longest time between two sweeps for idle actors.
SWEEP_SECONDS = 1.0
#: Idle actors deactivated in one go before the sweeper yields the event loop: ~0.8 ms of work.
SWEEP_CHUNK = 256


class ActorHost:
    """Hosts virtual actors addressed by (type, id) in this process."""

    def __init__(
        self,
        store: SqliteStore,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        clock: Callable[[], float] = time.time,
        event_sink: EventSink | None = None,
        reminder_page_size: int | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._idle_timeout = idle_timeout
        self._event_sink = event_sink
        #: Per actor type: its factory and the methods callers may call (the functions themselves).
        self._types: dict[str, tuple[ActorFactory, frozenset[object]]] = {}
        self._batching: dict[str, ReminderBatching] = {}
        self._active: Activations = OrderedDict()
        #: Actors kept in memory however long they are idle (`pin`), by key.
        self._pinned: set[tuple[str, str]] = set()
        #: Activations so far (state read from the store and on_activate run).
        self.activations = 0
        self.stats = RuntimeStats()
        store.stats = self.stats
        #: With tracing on: the trace that set each reminder, for its firing's trace to link to.
        self._reminder_traces: ReminderTraces = {}
        self._scheduler = ReminderScheduler(
            store,
            self._fire_reminders,
            clock=clock,
            page_size=reminder_page_size or PAGE_SIZE,
            lateness=self.stats.reminder_lateness.observe,
        )
        self._batches = ReminderBatches(
            self._active,
            store,
            self._scheduler,
            clock=clock,
            event_sink=event_sink,
            deactivate=self._deactivate,
            reminder_traces=self._reminder_traces,
        )
        self._sweeper: asyncio.Task[None] | None = None
        self._running = False

    # -- set-up ------------------------------------------------------------------------------------

    def register_actor_type(
        self,
        actor_type: str,
        actor_class: type[Actor],
        factory: ActorFactory | None = None,
        *,
        batching: ReminderBatching | None = None,
        urgent: Iterable[str] = (),
    ) -> None:
        """Make actors of `actor_class` reachable under `actor_type`, built by `factory` (default: the class).

        Callable methods are the public coroutine methods the class adds to Actor, named by the function
        (`Counter.increment`). With `batching`, the reminders it names are handled in batches where the
        actor is not busy (see _batching.py). Reminders named in `urgent` fire ahead of the others that are
        due, each in a turn of its own (see _scheduler.py).
        """
        self._scheduler.prioritise(actor_type, urgent)
        if batching is None:
            self._batching.pop(actor_type, None)
        else:
            self._batching[actor_type] = batching
        base = set(dir(Actor))
        methods = frozenset(
            method
            for name, method in inspect.getmembers(actor_class, inspect.iscoroutinefunction)
            if not name.startswith("_") and name not in base
        )
        self._types[actor_type] = (factory or actor_class, methods)

    async def start(self) -> None:
        self._store.open(asyncio.get_running_loop())
        self._scheduler.start()
        self._sweeper = asyncio.create_task(self._sweep_idle(), name="airdisplay-idle-sweeper")
        self._running = True

    async def stop(self) -> None:
        """Stop reminders, deactivate every actor and close the store; pending writes are committed."""
        self._running = False
        await self._scheduler.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for key in list(self._active):
            await self._deactivate(key)
        await self._store.close()

    @property
    def active_count(self) -> int:
        return len(self._active)

    @property
    def pinned_count(self) -> int:
        return len(self._pinned)

    def pin(self, actor_type: str, actor_id: str) -> None:
        """Keep the actor in memory while pinned, however long it is idle (it is activated on its next
        call as usual): for an actor called often but irregularly, such as a banner with a device linked."""
        self._pinned.add((actor_type, actor_id))

    def unpin(self, actor_type: str, actor_id: str) -> None:
        """Let the actor leave memory again once idle; nothing if it was not pinned."""
        self._pinned.discard((actor_type, actor_id))

    @property
    def reminders_in_memory(self) -> int:
        return self._scheduler.in_memory

    @property
    def store(self) -> SqliteStore:
        return self._store

    # -- calls -------------------------------------------------------------------------------------

    async def call(
        self,
        actor_type: str,
        actor_id: str,
        method: Callable[Concatenate[A, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Call `method` (`Counter.increment`) on actor (actor_type, actor_id) in a turn of its own.

        `method` must be one the actor type's class exposes (UnknownActorMethod otherwise), so the actor
        the turn runs on is an instance of its class.
        """
        _, methods = self._type(actor_type)
        if method not in methods:
            name = getattr(method, "__qualname__", method)
            raise UnknownActorMethod(f"actor type {actor_type!r} has no method {name!r}")
        act = await self._acquire(actor_type, actor_id)
        started = time.perf_counter()
        try:
            # The method is one of the class's, so the actor is an A (the type's factory builds it).
            return await self._turn(act, lambda actor: method(cast(A, actor), *args, **kwargs))
        finally:
            self._release(act)
            self.stats.turn_timer(method).observe(time.perf_counter() - started)

    def _type(self, actor_type: str) -> tuple[ActorFactory, frozenset[object]]:
        try:
            return self._types[actor_type]
        except KeyError:
            raise UnknownActorType(f"no actor type {actor_type!r} is registered") from None

    async def _acquire(self, actor_type: str, actor_id: str, *, urgent: bool = False) -> Activation:
        """Wait for the actor's turn, activating it first if needed (its state read ahead of other reads
        if `urgent`); returns with its lock held."""
        if not self._running:
            raise RuntimeClosed("the actor host is not running")
        factory, _ = self._type(actor_type)
        key = (actor_type, actor_id)
        while True:
            act = self._active.get(key)
            if act is None:
                act = self._active[key] = Activation(key)
            act.waiting += 1
            try:
                await act.lock.acquire()
            finally:
                act.waiting -= 1
            if act.status is ActivationStatus.ACTIVE:
                return act
            if act.status is ActivationStatus.NEW:
                try:
                    await self._activate(act, factory, urgent)
                except BaseException:
                    act.status = ActivationStatus.DEACTIVATED
                    if self._active.get(key) is act:
                        del self._active[key]
                    act.lock.release()
                    raise
                return act
            act.lock.release()  # deactivated while we queued: start over with a fresh activation

    async def _activate(self, act: Activation, factory: ActorFactory, urgent: bool) -> None:
        actor_type, actor_id = act.key
        try:
            state = ActorStateManager(await self._store.read_actor(actor_type, actor_id, urgent=urgent))
            act.context = ctx = ActorContext(actor_type, actor_id, state, self._clock)
            actor = factory(ctx)
            await actor.on_activate()
        except Exception as exc:
            raise ActivationFailed(f"activating {actor_type}/{actor_id} failed: {exc}") from exc
        self.activations += 1
        act.actor = actor
        act.status = ActivationStatus.ACTIVE

    def _release(self, act: Activation) -> None:
        act.last_used = time.monotonic()
        act.lock.release()
        key = act.key
        if self._active.get(key) is act:
            self._active.move_to_end(key)
            if act.waiting == 0 and act.ctx.state.is_empty:
                # An actor without state (never created, or just deleted) costs memory for nothing.
                asyncio.get_running_loop().create_task(self._deactivate(key))

    async def _turn(
        self,
        act: Activation,
        call: Callable[[Actor], Awaitable[T]],
        fired: ReminderRecord | None = None,
    ) -> T:
        ctx = act.ctx
        assert act.actor is not None
        try:
            result = await call(act.actor)
        except BaseException:
            ctx.end_turn(committed=False)
            raise
        write = ctx.build_write()
        next_due = None
        if fired is not None:
            write.fired = fired
            if fired.period is not None:
                # A periodic reminder that fell behind (host down) fires once, then resumes its rhythm.
                next_due = max(fired.due_at + fired.period, self._clock())
                write.fired_next_due = next_due
        if not write:
            ctx.end_turn(committed=True)
            return result
        # An urgent reminder's turn (see _scheduler.py) is committed ahead of the writes queued before it.
        pending = self._store.write(write, urgent=fired is not None and self._scheduler.is_urgent(fired))
        try:
            if tracing.here():
                with tracing.span("actor.commit", attributes={"actor.type": ctx.actor_type}):
                    await asyncio.shield(pending)
            else:
                await asyncio.shield(pending)
        except asyncio.CancelledError:
            # The write lands or fails as a whole whatever happens to the caller; follow it first.
            with contextlib.suppress(Exception):
                await pending
            self._finish_write(act, write, pending, next_due)
            raise
        except Exception:
            ctx.end_turn(committed=False)
            raise
        self._finish_write(act, write, pending, next_due)
        return result

    def _finish_write(
        self, act: Activation, write: TurnWrite, pending: asyncio.Future[bool], next_due: float | None
    ) -> None:
        ctx = act.ctx
        if pending.cancelled() or pending.exception() is not None:
            ctx.end_turn(committed=False)
            return
        self._scheduler.committed(
            ctx.actor_type, ctx.actor_id, write.reminders_set, write.reminders_removed, write.fired, next_due
        )
        if tracing.enabled:
            remember_traces(self._reminder_traces, write)
        events = ctx.take_events()
        ctx.end_turn(committed=True)
        if events and self._event_sink is not None:
            try:
                self._event_sink(ctx.actor_type, ctx.actor_id, events)
            except Exception:
                log.exception("event sink failed for %s/%s", ctx.actor_type, ctx.actor_id)

    # -- reminders ---------------------------------------------------------------------------------

    async def _fire_reminders(self, records: list[ReminderRecord]) -> list[ReminderRecord]:
        """Handle due reminders, in one batch where type and actor allow it; return the ones that failed."""
        if not self._running:
            return []
        claims: dict[tuple[str, str], Claim] = {}
        singles: list[ReminderRecord] = []
        for record in records:
            batching = self._batching.get(record.actor_type)
            key = (record.actor_type, record.actor_id)
            if (
                batching is None
                or record.period is not None
                or record.name not in batching.names
                or key in claims
            ):
                singles.append(record)
            elif not self._scheduler.is_current(record):
                continue  # replaced or removed since the scheduler took it
            else:
                claim = await self._batches.claim(record, batching)
                if claim is None:
                    singles.append(record)  # busy: a turn of its own, queued behind the others
                else:
                    claims[key] = claim
        work = [self._fire_single(record) for record in singles]
        if claims:
            work.append(self._fire_batch(list(claims.values())))
        if len(work) == 1:
            return await work[0]
        return [record for failed in await asyncio.gather(*work) for record in failed]

    async def _fire_batch(self, claims: list[Claim]) -> list[ReminderRecord]:
        """A batch, and the turns of the reminders its handler left to one, started as it finds them (their
        writes join the batch's group commit or the next, not after it); returns those that failed."""
        turns: list[asyncio.Task[list[ReminderRecord]]] = []

        def start_turn(record: ReminderRecord) -> None:
            turns.append(asyncio.get_running_loop().create_task(self._fire_single(record)))

        try:
            failed = await self._batches.run(claims, start_turn)
        finally:  # the turns end as they would have after the batch, whatever happened to it
            ended = await asyncio.gather(*turns, return_exceptions=True)
        for result in ended:
            if isinstance(result, BaseException):
                raise result
            failed += result
        return failed

    async def _fire_single(self, record: ReminderRecord) -> list[ReminderRecord]:
        try:
            await self._fire_reminder(record)
        except Exception:
            log.exception(
                "reminder %s of %s/%s failed; will retry", record.name, record.actor_type, record.actor_id
            )
            return [record]
        return []

    async def _fire_reminder(self, record: ReminderRecord) -> None:
        if not self._running:
            return
        act = await self._acquire(
            record.actor_type, record.actor_id, urgent=self._scheduler.is_urgent(record)
        )
        try:
            if not self._scheduler.is_current(record):
                return  # replaced or removed while it waited for the turn
            period = None if record.period is None else timedelta(seconds=record.period)

            def call(actor: Actor) -> Awaitable[None]:
                return actor.receive_reminder(record.name, record.data, timedelta(0), period)

            if tracing.enabled:
                with fired_span(record, self._reminder_traces.pop(record.key, None)):
                    await self._turn(act, call, fired=record)
            else:
                await self._turn(act, call, fired=record)
        finally:
            self._release(act)

    # -- deactivation ------------------------------------------------------------------------------

    async def _sweep_idle(self) -> None:
        """Deactivate actors idle for longer than the idle timeout, a chunk at a time.

        Each deactivation takes ~3 us of the event loop. A whole sweep in one go stalled the loop for
        65-135 ms at every sweep with 8,000 new actors a second (in-process, 10 s idle timeout; with a
        60 s timeout a sweep held ~100,000 actors), so the sweeper yields after every chunk and sweeps at
        least every second.
        """
        interval = max(min(self._idle_timeout / 4, SWEEP_SECONDS), 0.01)
        while True:
            await asyncio.sleep(interval)
            cutoff = time.monotonic() - self._idle_timeout
            while True:
                idle = self._idle_keys(cutoff, SWEEP_CHUNK)
                for key in idle:
                    await self._deactivate(key)
                if len(idle) < SWEEP_CHUNK:
                    break
                await asyncio.sleep(0)

    def _idle_keys(self, cutoff: float, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` actors last used before `cutoff` that nobody is calling, least recent first.

        Pinned actors met on the way count as used now (moved to the end), so each is passed over once per
        idle timeout rather than at every sweep."""
        idle: list[tuple[str, str]] = []
        pinned, kept = self._pinned, []
        for key, act in self._active.items():
            if act.last_used > cutoff or len(idle) == limit:
                break  # ordered by last use: the rest are more recent
            if key in pinned:
                kept.append(act)
            elif act.waiting == 0 and not act.lock.locked():
                idle.append(key)
        if kept:
            now = time.monotonic()
            for act in kept:
                act.last_used = now
                self._active.move_to_end(act.key)
        return idle

    async def _deactivate(self, key: tuple[str, str]) -> None:
        act = self._active.get(key)
        if act is None or act.waiting or act.lock.locked():
            return
        del self._active[key]
        if act.status is not ActivationStatus.ACTIVE:
            act.status = ActivationStatus.DEACTIVATED
            return
        act.status = ActivationStatus.DEACTIVATING
        async with act.lock:
            try:
                assert act.actor is not None
                await act.actor.on_deactivate()
            except Exception:
                log.exception("on_deactivate of %s/%s failed", *key)
            finally:
                act.ctx.end_turn(committed=False)
                act.status = ActivationStatus.DEACTIVATED
