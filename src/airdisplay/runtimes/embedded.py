"""Banner actors on the embedded actor runtime: one process, one SQLite file, no sidecar.

Errors leave it as the runtime interface's (base.py): a host that is not running as RuntimeNotRunning,
a store that refuses or fails a read or write (and an activation whose state cannot be read) as
StorageUnavailable. Domain errors pass through unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from prometheus_client.registry import Collector

from ..actors import (
    DEFAULT_IDLE_TIMEOUT,
    NEEDS_TURN,
    ActivationFailed,
    Actor,
    ActorContext,
    ActorHost,
    Durability,
    Record,
    RecordPrune,
    ReminderBatching,
    ReminderEffect,
    ReminderRecord,
    RuntimeClosed,
    SqliteStore,
    StoreError,
)
from ..domain import (
    Banner,
    BannerChanged,
    BannerRules,
    BookingQueue,
    BookOutcome,
    HistoryEntry,
    HistoryPage,
    SubmitOutcome,
    banner_cursor,
    fleet_cursor,
    read_fleet_cursor,
    stored_entries,
)
from ..events import InProcessEventBus
from ._retention import HistoryRetention
from .base import BannerRuntime, RuntimeNotRunning, StorageUnavailable, banner_call
from .behaviour import (
    BANNER_KEY,
    EXPIRE_REMINDER,
    SWITCH_REMINDER,
    BannerBehaviour,
    BookingsWaiting,
    Registration,
    banner_of,
)

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger("airdisplay.embedded")

T = TypeVar("T")
P = ParamSpec("P")

BANNER_ACTOR_TYPE = "banner"
#: Banners are searched by name prefix (GET /api/v1/banners?q=); the store indexes that field.
SEARCH_INDEX = (BANNER_KEY, "name")
DATABASE_FILE = "airdisplay.db"


class BannerActor(BannerBehaviour, Actor):
    """The banner actor hosted by the embedded runtime."""

    switch_reminder = SWITCH_REMINDER

    def __init__(self, ctx: ActorContext, rules: BannerRules) -> None:
        super().__init__(ctx)
        self.rules = rules

    def _history(self, record_id: str, at: float, value: bytes) -> None:
        self.put_record(Record(record_id, at, value))


def _expire_in_batch(
    record: ReminderRecord, stored: Mapping[str, bytes], now: float
) -> ReminderEffect | None:
    """The expiry of a banner that is not busy: what `BannerBehaviour.expire` does, without a turn (but
    for one with bookings waiting: starting the next arms its expiry, in a turn)."""
    try:
        expired = BannerBehaviour.expire_stored(stored.get(BANNER_KEY), record.data.decode(), now)
    except BookingsWaiting:
        return NEEDS_TURN
    if expired is None:
        return None
    value, event, (record_id, at, entry) = expired
    return ReminderEffect(
        state_set=((BANNER_KEY, value),),
        events=(event,),
        records=(Record(record_id, at, entry),),
    )


#: Expiries of banners that are not busy go in batches: one read and one transaction per batch instead of
#: an activation and a turn each (bench/expiries.py).
EXPIRY_BATCHING = ReminderBatching(frozenset({EXPIRE_REMINDER}), (BANNER_KEY,), _expire_in_batch)


class EmbeddedRuntime(BannerRuntime):
    """Runs banner actors in this process over `<data_dir>/airdisplay.db`."""

    name = "embedded"

    def __init__(
        self,
        data_dir: Path,
        rules: BannerRules,
        *,
        idle_timeout: float | None = None,
        durability: Durability = "full",
        clock: Callable[[], float] = time.time,
        history_days: float = 0.0,
    ) -> None:
        """`clock` (seconds since the epoch) drives the actors' time and reminders; tests pass a fake one."""
        self.database = data_dir / DATABASE_FILE
        self.host = ActorHost(
            SqliteStore(self.database, durability=durability),
            event_sink=self._on_events,
            idle_timeout=DEFAULT_IDLE_TIMEOUT if idle_timeout is None else idle_timeout,
            clock=clock,
        )
        self.host.register_actor_type(
            BANNER_ACTOR_TYPE,
            BannerActor,
            lambda ctx: BannerActor(ctx, rules),
            batching=EXPIRY_BATCHING,
            urgent=(SWITCH_REMINDER,),
        )
        self.event_bus = InProcessEventBus()
        self._running = False
        #: Why a banner is kept in memory (`ActorHost.pin`): its device is linked, or it has bookings waiting.
        self._linked: set[str] = set()
        self._queued: set[str] = set()
        #: History older than `history_days` goes (0: kept for good).
        self.retention = HistoryRetention(self._prune_history, history_days, clock=clock)

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedRuntime:
        return cls(
            settings.data_dir,
            settings.rules,
            idle_timeout=settings.idle_seconds,
            durability=settings.durability,
            history_days=settings.history_days,
        )

    async def start(self) -> None:
        await self.event_bus.start()
        try:
            await self.host.start()
            self.host.store.ensure_field_index(*SEARCH_INDEX)
        except BaseException:
            await self.event_bus.stop()
            raise
        self._running = True
        self.retention.start()

    async def stop(self) -> None:
        self._running = False
        await self.retention.stop()
        await self.host.stop()
        await self.event_bus.stop()

    def is_ready(self) -> bool:
        return self._running

    def unready_reason(self) -> str | None:
        """Also not ready while the store refuses writes (disk full): reads and streams still work."""
        if not self._running:
            return super().unready_reason()
        return self.host.store.write_refusal

    def gauges(self) -> dict[str, float]:
        return {
            "actors_active": self.host.active_count,
            "actors_pinned": self.host.pinned_count,
            "reminders_in_memory": self.host.reminders_in_memory,
            "store_writable": 0.0 if self.host.store.write_refusal else 1.0,
            "store_queued_writes": self.host.store.queued_writes,
        }

    def collectors(self) -> list[Collector]:
        return [self.host.stats.registry]

    def _on_events(self, actor_type: str, actor_id: str, events: list[object]) -> None:
        """Publish a turn's changes; a banner with bookings waiting stays in memory until its queue is
        empty, so the turn that starts the next booking at its slot waits for no activation (a read of the
        store, p99 34 ms of a switch under the 1M-expiry wave, docs/benchmarks/results/booking_switches.md).
        Memory grows with the banners that have bookings, each of which is in use."""
        for event in events:
            if isinstance(event, BannerChanged):
                self.event_bus.publish(event)
                banner = event.banner
                if banner is not None and banner.queue:
                    if actor_id not in self._queued:
                        self._queued.add(actor_id)
                        self.host.pin(BANNER_ACTOR_TYPE, actor_id)
                elif actor_id in self._queued:
                    self._let_go(actor_id, self._queued)

    def _let_go(self, banner_id: str, reason: set[str]) -> None:
        """`banner_id` is no longer kept in memory for `reason`; unpinned when no reason is left."""
        reason.discard(banner_id)
        if banner_id not in self._linked and banner_id not in self._queued:
            self.host.unpin(BANNER_ACTOR_TYPE, banner_id)

    def _call(
        self,
        banner_id: str,
        turn: Callable[Concatenate[BannerActor, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Awaitable[T]:
        """Run `turn` (a BannerBehaviour method) on the banner's actor; the host's errors as the runtime's.
        (A plain function: with tracing off the caller awaits `_call_host` itself, one coroutine fewer.)"""
        return banner_call(turn.__name__, banner_id, self._call_host(banner_id, turn, *args, **kwargs))

    async def _call_host(
        self,
        banner_id: str,
        turn: Callable[Concatenate[BannerActor, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        try:
            return await self.host.call(BANNER_ACTOR_TYPE, banner_id, turn, *args, **kwargs)
        except RuntimeClosed as exc:
            raise RuntimeNotRunning(str(exc)) from exc
        except (StoreError, ActivationFailed) as exc:
            raise StorageUnavailable(str(exc)) from exc

    async def create_banner(self, banner_id: str, name: str) -> Registration:
        return await self._call(banner_id, BannerActor.register, name)

    async def rotate_device_token(self, banner_id: str) -> str:
        return await self._call(banner_id, BannerActor.rotate_device_token)

    async def authenticate_device(self, banner_id: str, token: str) -> Banner:
        return await self._call(banner_id, BannerActor.check_device_token, token)

    async def device_online(self, banner_id: str) -> Banner:
        """The banner stays in memory while its device is linked: its acks then cost no activation (a
        read of the store) each, where the 2 s idle timeout let it go between two messages."""
        banner = await self._call(banner_id, BannerActor.device_online)
        self._linked.add(banner_id)
        self.host.pin(BANNER_ACTOR_TYPE, banner_id)
        return banner

    async def device_offline(self, banner_id: str) -> Banner:
        self._let_go(banner_id, self._linked)
        return await self._call(banner_id, BannerActor.device_offline)

    async def device_ack(self, banner_id: str, display_version: int) -> Banner:
        return await self._call(banner_id, BannerActor.device_ack, display_version)

    async def get_banner(self, banner_id: str) -> Banner:
        return await self._call(banner_id, BannerActor.get)

    async def delete_banner(self, banner_id: str) -> None:
        await self._call(banner_id, BannerActor.delete)
        self._let_go(banner_id, self._linked)
        self._let_go(banner_id, self._queued)

    async def submit_message(
        self,
        banner_id: str,
        text: str,
        *,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
        by: str | None = None,
    ) -> SubmitOutcome:
        return await self._call(
            banner_id,
            BannerActor.submit,
            text,
            idempotency_key=idempotency_key,
            expected_version=expected_version,
            by=by,
        )

    async def clear_message(self, banner_id: str) -> Banner:
        return await self._call(banner_id, BannerActor.clear)

    async def book(
        self, banner_id: str, text: str, *, by: str, idempotency_key: str | None = None
    ) -> BookOutcome:
        return await self._call(banner_id, BannerActor.book, text, by, idempotency_key)

    async def cancel_booking(self, banner_id: str, booking_id: str, token: str | None) -> Banner:
        return await self._call(banner_id, BannerActor.cancel_booking, booking_id, token)

    async def bookings(self, banner_id: str) -> BookingQueue:
        return await self._call(banner_id, BannerActor.bookings)

    async def _prune_history(self, before: float, limit: int) -> bool:
        return await self.host.store.prune_records(RecordPrune(BANNER_ACTOR_TYPE, before, limit))

    async def _showing(self, banner_id: str) -> HistoryEntry | None:
        return await self._call(banner_id, BannerActor.showing)

    async def _recorded(self, banner_id: str, cursor: tuple[float, str] | None, limit: int) -> HistoryPage:
        try:
            rows = self.host.store.records_of(BANNER_ACTOR_TYPE, banner_id, cursor, limit)
        except StoreError as exc:
            raise StorageUnavailable(str(exc)) from exc
        items = stored_entries((banner_id, value) for _, _, value in rows)
        last = rows[-1] if len(rows) == limit else None
        return HistoryPage(items, None if last is None else banner_cursor(last[0], last[1]))

    async def fleet_history(
        self, *, since: datetime, until: datetime, after: str | None, limit: int
    ) -> HistoryPage:
        cursor = None if after is None else read_fleet_cursor(after)
        try:
            rows = self.host.store.records_between(
                BANNER_ACTOR_TYPE, since.timestamp(), until.timestamp(), cursor, limit
            )
        except StoreError as exc:
            raise StorageUnavailable(str(exc)) from exc
        items = stored_entries((banner_id, value) for banner_id, _, _, value in rows)
        last = rows[-1] if len(rows) == limit else None
        return HistoryPage(items, None if last is None else fleet_cursor(last[1], last[0], last[2]))

    async def list_banners(self, *, after: str | None, limit: int, search: str | None = None) -> list[Banner]:
        store = self.host.store
        try:
            if search:
                rows = store.search_state(BANNER_ACTOR_TYPE, BANNER_KEY, "name", search.lower(), after, limit)
            else:
                rows = store.page_state(BANNER_ACTOR_TYPE, BANNER_KEY, after, limit)
        except StoreError as exc:
            raise StorageUnavailable(str(exc)) from exc
        return [banner_of(raw) for _, raw in rows]
