"""The banner actor hosted by the official Dapr Python SDK: the same BannerBehaviour, Dapr's Actor base.

Pitfalls of the SDK (1.19) and of Dapr 1.18 handled here on purpose, each with its test named (the
files are tests/runtimes/dapr/test_dapr_host.py, on a daprd double, and
tests/runtimes/dapr/test_real_cluster.py):
- A method that raises leaves its changes in the SDK's state cache, and the next turn saves them
  (manager.py clears the cache only for DaprInternalError). Every turn here clears the cache on failure
  (test_a_failed_turn_leaves_no_cached_partial_state_for_the_next_turn).
- State is saved by the SDK after the method returns; events must leave only after the state is durable,
  so each turn saves explicitly, then hands its events to daprd, then writes the fleet directory
  (_directory.py), and only then answers. A replica can die between the save and the rest (a kill -9
  under load showed it: a retried submit answered from the saved state, its event never sent). So each
  activation compares the directory's stamp with the state and, when the directory is behind, publishes
  the banner's state again with the kind of its last change (kept in state for this) and records it
  (test_an_activation_brings_a_directory_left_behind_by_a_dead_replica_level_again,
  test_kill_9_of_a_replica_under_load_loses_nothing_and_its_banners_answer_through_the_other).
- Domain refusals are returned as results (see _wire.py), never raised: daprd would turn them into a 500
  (test_actor_methods_answer_with_envelopes_on_the_sdk_routes).
- The expiry is a one-shot reminder (period None, sent as `"period": null`); `timedelta(0)` would repeat
  (test_expiry_is_a_one_shot_reminder).
- Reminders arrive at least once (daprd retries a failing one 3 times): the expiry handler is idempotent
  (test_a_reminder_delivered_four_times_expires_the_message_once). After those retries the Scheduler
  deletes the reminder; the runtime's expiry sweep (_sweep.py) then expires the message through
  `expire`, which acts only on a message whose time is up
  (test_a_message_whose_reminder_is_gone_is_expired_by_the_sweep).
- Dapr 1.18 truncates a sub-second dueTime (0.5 s fires at once): due times are rounded up to whole
  seconds, so an expiry is never early and at most a second late
  (test_expiry_fires_through_the_scheduler_once_and_both_replicas_see_it).
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from dapr.actor import Actor, ActorInterface, Remindable, actormethod
from dapr.actor.id import ActorId
from dapr.actor.runtime.context import ActorRuntimeContext
from opentelemetry.trace import SpanContext

from ... import tracing
from ...actors import RuntimeStats
from ...domain import Banner, BannerChanged, BannerRules, ChangeKind, DomainError
from ...logs import about
from ..behaviour import BANNER_KEY, BannerBehaviour, banner_of
from ._directory import RedisDirectory, stamp_of
from ._events import DaprEventBus
from ._history import OUTBOX_KEY
from ._wire import banner_value, book_value, error, ok

log = logging.getLogger("airdisplay.dapr.actor")

#: The actor type name daprd routes by; the SDK takes it from the class name.
DAPR_ACTOR_TYPE = "BannerActor"
#: State key of the kind of the banner's last change, for publishing it again after a crash.
LAST_CHANGE_KEY = "last_change"

#: With tracing on: the trace of the turn that set each reminder of this replica's actors, by (banner id,
#: reminder name), for its firing to link to. In memory, and capped: a reminder whose actor moved to
#: another replica, or was unregistered, leaves an entry until the oldest are dropped.
_REMINDER_SETTERS: OrderedDict[tuple[str, str], SpanContext] = OrderedDict()
REMINDER_SETTERS_KEPT = 100_000


def _remember_setter(key: tuple[str, str]) -> None:
    found = tracing.current()
    if found is None:
        return
    _REMINDER_SETTERS[key] = found
    _REMINDER_SETTERS.move_to_end(key)
    if len(_REMINDER_SETTERS) > REMINDER_SETTERS_KEPT:
        _REMINDER_SETTERS.popitem(last=False)


_Method = TypeVar("_Method", bound=Callable[..., Awaitable[dict[str, Any]]])


def _turn_named(turn: Callable[..., Awaitable[object]]) -> Callable[[_Method], _Method]:
    """`actormethod` with the wire name of the BannerBehaviour turn it runs: one set of operation names
    for both runtimes (the embedded one calls the turns themselves), declared once, by the turns."""
    decorate: Callable[[_Method], _Method] = actormethod(name=turn.__name__)
    return decorate


class BannerActorInterface(ActorInterface):
    """The methods daprd can call by their wire names (the turns' names); each takes one JSON object."""

    @_turn_named(BannerBehaviour.register)
    async def call_register(self, data: dict[str, Any]) -> dict[str, Any]: ...

    @_turn_named(BannerBehaviour.get)
    async def call_get(self, data: dict[str, Any]) -> dict[str, Any]: ...

    @_turn_named(BannerBehaviour.submit)
    async def call_submit(self, data: dict[str, Any]) -> dict[str, Any]: ...

    @_turn_named(BannerBehaviour.clear)
    async def call_clear(self, data: dict[str, Any]) -> dict[str, Any]: ...

    @_turn_named(BannerBehaviour.delete)
    async def call_delete(self, data: dict[str, Any]) -> dict[str, Any]: ...

    @_turn_named(BannerBehaviour.rotate_device_token)
    async def call_rotate_device_token(self, data: dict[str, Any]) -> dict[str, Any]: ...

    @_turn_named(BannerBehaviour.check_device_token)
    async def call_check_device_token(self, data: dict[str, Any]) -> dict[str, Any]: ...

    @_turn_named(BannerBehaviour.device_online)
    async def call_device_online(self, data: dict[str, Any]) -> dict[str, Any]: ...

    @_turn_named(BannerBehaviour.device_offline)
    async def call_device_offline(self, data: dict[str, Any]) -> dict[str, Any]: ...

    @_turn_named(BannerBehaviour.device_ack)
    async def call_device_ack(self, data: dict[str, Any]) -> dict[str, Any]: ...

    @_turn_named(BannerBehaviour.expire)
    async def call_expire(self, data: dict[str, Any]) -> dict[str, Any]: ...

    @_turn_named(BannerBehaviour.book)
    async def call_book(self, data: dict[str, Any]) -> dict[str, Any]: ...

    @_turn_named(BannerBehaviour.cancel_booking)
    async def call_cancel_booking(self, data: dict[str, Any]) -> dict[str, Any]: ...

    @_turn_named(BannerBehaviour.bookings)
    async def call_bookings(self, data: dict[str, Any]) -> dict[str, Any]: ...

    @_turn_named(BannerBehaviour.showing)
    async def call_showing(self, data: dict[str, Any]) -> dict[str, Any]: ...


class BannerActor(BannerBehaviour, Actor, BannerActorInterface, Remindable):
    """A banner on Dapr. (Remindable must be a direct base: the SDK checks __bases__.)"""

    def __init__(
        self,
        ctx: ActorRuntimeContext,
        actor_id: ActorId,
        rules: BannerRules,
        bus: DaprEventBus,
        directory: RedisDirectory,
        stats: RuntimeStats | None = None,
    ) -> None:
        super().__init__(ctx, actor_id)
        self.rules = rules
        self._stats = stats or RuntimeStats()
        self._bus = bus
        self._directory = directory
        self._events: list[object] = []
        #: The turn's history records (_history.py), written to Redis once the turn's state is saved.
        self._records: list[dict[str, Any]] = []
        #: The banner a Delete turn removes: its tombstone in the directory needs its life and name.
        self._deleting: Banner | None = None

    def now(self) -> float:
        return time.time()

    def publish(self, event: object) -> None:
        self._events.append(event)

    def _history(self, record_id: str, at: float, value: bytes) -> None:
        self._records.append({"id": record_id, "at": at, "value": value.decode()})

    async def _turn(self, action: Callable[[], Awaitable[object]], method: str) -> dict[str, Any]:
        """Run one turn (of BannerBehaviour's `method`): all or nothing for state, events only after the
        state is saved."""
        started = time.perf_counter()
        try:
            if tracing.here():
                with tracing.span(f"turn {method}", attributes={"banner.id": self.id.id}):
                    return await self._run_turn(action)
            return await self._run_turn(action)
        finally:
            self._stats.turn_seconds.labels(method).observe(time.perf_counter() - started)

    async def _run_turn(self, action: Callable[[], Awaitable[object]]) -> dict[str, Any]:
        self._events = []
        self._records = []
        try:
            value = await action()
        except DomainError as exc:
            await self._state_manager.clear_cache()
            return error(exc)
        except BaseException:
            await self._state_manager.clear_cache()
            raise
        changes = [event for event in self._events if isinstance(event, BannerChanged)]
        records, self._events, self._records = self._records, [], []
        if self._deleting is not None:  # nothing of a deleted banner stays in its state
            if await self._state_manager.contains_state(OUTBOX_KEY):
                await self._state_manager.remove_state(OUTBOX_KEY)
        elif records:  # saved with the turn, so that a replica dying before Redis has them loses none
            await self._state_manager.set_state(OUTBOX_KEY, records)
        if changes and changes[-1].banner is not None:
            await self._state_manager.set_state(LAST_CHANGE_KEY, changes[-1].kind.value)
        elif changes and await self._state_manager.contains_state(LAST_CHANGE_KEY):
            await self._state_manager.remove_state(LAST_CHANGE_KEY)  # deleted: nothing of it stays
        saving = time.perf_counter()
        if tracing.here():
            with tracing.span("actor.commit", attributes={"actor.type": DAPR_ACTOR_TYPE}):
                await self._state_manager.save_state()
        else:
            await self._state_manager.save_state()
        self._stats.commit_seconds.observe(time.perf_counter() - saving)
        if records:
            await self._write_history(records)
        gone = self._deleting
        for change in changes:
            await self._settle(change, None if gone is None else (stamp_of(gone.created_at), gone.name))
        return ok(value)

    async def _settle(self, change: BannerChanged, gone: tuple[int, str] | None) -> None:
        """Hand a saved change to daprd, then record it in the fleet directory."""

        async def record() -> None:
            try:
                if change.banner is not None:
                    await self._directory.put(change.banner)
                elif gone is not None:
                    await self._directory.delete(change.banner_id, gone[0], change.version, gone[1])
            except Exception as exc:  # Redis down: the state is saved, the caller must still hear so
                log.warning(
                    "the fleet directory missed %s v%s: %s",
                    change.banner_id,
                    change.version,
                    exc,
                    extra=about(change.banner_id),
                )

        await self._bus.send(change, record)

    async def _write_history(self, records: list[dict[str, Any]]) -> None:
        try:
            await self._directory.history.write(self.id.id, records)
        except Exception as exc:  # Redis down: the outbox keeps them for the next activation
            log.warning("banner %s: history not written yet: %s", self.id.id, exc, extra=about(self.id.id))

    async def _on_activate(self) -> None:
        """Publish and record the banner's state again if a replica died between saving it and that, and
        write history records a replica may have left in the outbox."""
        found, outbox = await self._state_manager.try_get_state(OUTBOX_KEY)
        if found and isinstance(outbox, list):
            await self._write_history(outbox)
        try:
            recorded = await self._directory.recorded(str(self.id))
            found, raw = await self._state_manager.try_get_state(BANNER_KEY)
            if found:
                banner = banner_of(raw)
                if recorded is None or recorded[:2] < (stamp_of(banner.created_at), banner.version):
                    _, kind = await self._state_manager.try_get_state(LAST_CHANGE_KEY)
                    change = BannerChanged(
                        ChangeKind(kind or ChangeKind.CREATED),
                        banner.id,
                        banner.version,
                        banner,
                        banner.updated_at,
                    )
                    log.info(
                        "banner %s: publishing v%s again (the directory had %s)",
                        banner.id,
                        banner.version,
                        recorded,
                        extra=about(banner.id),
                    )
                    await self._settle(change, None)
            elif recorded is not None and recorded[3]:
                life, version, name, _ = recorded
                deleted = BannerChanged(
                    ChangeKind.DELETED, str(self.id), version + 1, None, datetime.now(UTC)
                )
                log.info(
                    "banner %s: deleted, but still listed; recording the deletion",
                    self.id,
                    extra=about(str(self.id)),
                )
                await self._settle(deleted, (life, name))
        except Exception as exc:  # never keep a banner from activating over this
            log.warning(
                "banner %s: could not compare the directory with its state: %s",
                self.id,
                exc,
                extra=about(str(self.id)),
            )

    async def register_reminder(
        self,
        name: str,
        state: bytes,
        due_time: timedelta,
        period: timedelta | None = None,
        ttl: timedelta | None = None,
        failure_policy: Any = None,
    ) -> None:
        """The SDK's, with the due time rounded up to whole seconds (Dapr 1.18 truncates fractions)."""
        whole = timedelta(seconds=math.ceil(due_time.total_seconds()))
        await Actor.register_reminder(self, name, state, whole, period, ttl, failure_policy)
        if tracing.enabled:
            _remember_setter((self.id.id, name))

    # -- the interface -----------------------------------------------------------------------------

    async def call_register(self, data: dict[str, Any]) -> dict[str, Any]:
        async def run() -> object:
            registration = await self.register(str(data.get("name", "")))
            return {"banner": banner_value(registration.banner), "device_token": registration.device_token}

        return await self._turn(run, "register")

    async def call_get(self, data: dict[str, Any]) -> dict[str, Any]:
        return await self._turn(lambda: self._as_value(self.get()), "get")

    async def call_submit(self, data: dict[str, Any]) -> dict[str, Any]:
        async def run() -> object:
            outcome = await self.submit(
                str(data.get("text", "")),
                idempotency_key=data.get("idempotency_key"),
                expected_version=data.get("expected_version"),
                by=data.get("by"),
            )
            return {"banner": banner_value(outcome.banner), "replayed": outcome.replayed}

        return await self._turn(run, "submit")

    async def call_clear(self, data: dict[str, Any]) -> dict[str, Any]:
        return await self._turn(lambda: self._as_value(self.clear()), "clear")

    async def call_delete(self, data: dict[str, Any]) -> dict[str, Any]:
        async def run() -> object:
            self._deleting = await self._load()
            await self.delete()
            return None

        try:
            return await self._turn(run, "delete")
        finally:
            self._deleting = None

    async def call_rotate_device_token(self, data: dict[str, Any]) -> dict[str, Any]:
        return await self._turn(self.rotate_device_token, "rotate_device_token")

    async def call_check_device_token(self, data: dict[str, Any]) -> dict[str, Any]:
        return await self._turn(
            lambda: self._as_value(self.check_device_token(str(data.get("token", "")))), "check_device_token"
        )

    async def call_device_online(self, data: dict[str, Any]) -> dict[str, Any]:
        return await self._turn(lambda: self._as_value(self.device_online()), "device_online")

    async def call_device_offline(self, data: dict[str, Any]) -> dict[str, Any]:
        return await self._turn(lambda: self._as_value(self.device_offline()), "device_offline")

    async def call_device_ack(self, data: dict[str, Any]) -> dict[str, Any]:
        return await self._turn(
            lambda: self._as_value(self.device_ack(int(data.get("version", 0)))), "device_ack"
        )

    async def call_expire(self, data: dict[str, Any]) -> dict[str, Any]:
        """The sweep's expiry: take message `message_id` off only if its time is up (and it still shows)."""

        async def run() -> object:
            banner = await self._load()
            if banner.message is not None and banner.showing(self._now()) is None:
                await self.expire(str(data.get("message_id", "")))
            return None

        return await self._turn(run, "expire")

    async def call_book(self, data: dict[str, Any]) -> dict[str, Any]:
        async def run() -> object:
            outcome = await self.book(
                str(data.get("text", "")), str(data.get("by", "")), data.get("idempotency_key")
            )
            return book_value(outcome)

        return await self._turn(run, "book")

    async def call_cancel_booking(self, data: dict[str, Any]) -> dict[str, Any]:
        token = data.get("token")
        return await self._turn(
            lambda: self._as_value(
                self.cancel_booking(str(data.get("booking_id", "")), None if token is None else str(token))
            ),
            "cancel_booking",
        )

    async def call_bookings(self, data: dict[str, Any]) -> dict[str, Any]:
        async def run() -> object:
            return (await self.bookings()).model_dump(mode="json")

        return await self._turn(run, "bookings")

    async def call_showing(self, data: dict[str, Any]) -> dict[str, Any]:
        async def run() -> object:
            entry = await self.showing()
            return None if entry is None else entry.model_dump(mode="json")

        return await self._turn(run, "showing")

    async def receive_reminder(
        self,
        name: str,
        state: bytes,
        due_time: timedelta,
        period: timedelta | None,
        ttl: timedelta | None = None,
    ) -> None:
        """Reminder delivery (at least once). A failure raises so that daprd retries it."""

        def fire() -> Awaitable[None]:
            return BannerBehaviour.receive_reminder(self, name, state, due_time, period)

        if not tracing.enabled:
            await self._turn(fire, "receive_reminder")
            return
        setter = _REMINDER_SETTERS.pop((self.id.id, name), None)
        with tracing.span(
            f"reminder {name}", links=[setter] if setter else (), attributes={"banner.id": self.id.id}
        ):
            await self._turn(fire, "receive_reminder")

    @staticmethod
    async def _as_value(pending: Awaitable[Any]) -> object:
        return banner_value(await pending)
