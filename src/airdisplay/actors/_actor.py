"""The actor programming model: a base class that reads like Dapr's, and the per-activation context."""

from __future__ import annotations

import enum
from datetime import timedelta
from typing import Any

from ._records import Record, ReminderRecord, TurnWrite
from ._state import ActorStateManager


class ActivationStatus(enum.Enum):
    """Lifecycle of one activation: NEW -> ACTIVE -> DEACTIVATING -> DEACTIVATED (or NEW -> DEACTIVATED)."""

    NEW = "new"
    ACTIVE = "active"
    DEACTIVATING = "deactivating"
    DEACTIVATED = "deactivated"


class ActorContext:
    """What the host gives one activation: identity, state, and the reminders and events of the turn."""

    __slots__ = (
        "actor_type",
        "actor_id",
        "state",
        "clock",
        "_reminders_set",
        "_reminders_removed",
        "_events",
        "_records",
    )

    def __init__(self, actor_type: str, actor_id: str, state: ActorStateManager, clock: Any) -> None:
        self.actor_type = actor_type
        self.actor_id = actor_id
        self.state = state
        self.clock = clock
        # The turn's reminders and events, made when a turn first needs them and dropped when it ends:
        # an actor between turns holds no containers for the garbage collector to walk (idle actors are
        # many: every one costs each full collection its objects).
        self._reminders_set: dict[str, ReminderRecord] | None = None
        self._reminders_removed: set[str] | None = None
        self._events: list[object] | None = None
        self._records: list[Record] | None = None

    def set_reminder(self, name: str, data: bytes, due_time: timedelta, period: timedelta | None) -> None:
        due_at = self.clock() + due_time.total_seconds()
        seconds = None if period is None else period.total_seconds()
        if seconds is not None and seconds <= 0:
            raise ValueError("a periodic reminder needs a positive period; use period=None for one-shot")
        if self._reminders_removed is not None:
            self._reminders_removed.discard(name)
        if self._reminders_set is None:
            self._reminders_set = {}
        self._reminders_set[name] = ReminderRecord(
            self.actor_type, self.actor_id, name, due_at, seconds, data
        )

    def remove_reminder(self, name: str) -> None:
        if self._reminders_set is not None:
            self._reminders_set.pop(name, None)
        if self._reminders_removed is None:
            self._reminders_removed = set()
        self._reminders_removed.add(name)

    def emit(self, event: object) -> None:
        if self._events is None:
            self._events = []
        self._events.append(event)

    def put_record(self, record: Record) -> None:
        if self._records is None:
            self._records = []
        self._records.append(record)

    def build_write(self) -> TurnWrite:
        turn = TurnWrite(self.actor_type, self.actor_id)
        self.state.collect(turn)
        if self._records:
            turn.records.extend(self._records)
        if self._reminders_set:
            turn.reminders_set.extend(self._reminders_set.values())
        if self._reminders_removed:
            turn.reminders_removed.extend(self._reminders_removed)
        return turn

    def take_events(self) -> list[object]:
        events, self._events = self._events, None
        return events or []

    def end_turn(self, committed: bool) -> None:
        """Keep the turn's state changes (committed) or throw them away with its reminders and events."""
        if committed:
            self.state.commit()
        else:
            self.state.rollback()
            self._events = None
        self._reminders_set = None
        self._reminders_removed = None
        self._records = None


class Actor:
    """Base class of a virtual actor, in the shape of Dapr's `dapr.actor.Actor`.

    Subclasses add public `async def` methods; the host calls them one at a time per actor (a turn).
    Changes made through the state manager, reminders registered or unregistered, and events published
    during a turn take effect together once the turn's write is durable, or not at all if the turn raises.
    """

    def __init__(self, ctx: ActorContext) -> None:
        self._ctx = ctx

    @property
    def id(self) -> str:
        return self._ctx.actor_id

    @property
    def actor_type(self) -> str:
        return self._ctx.actor_type

    @property
    def _state_manager(self) -> ActorStateManager:
        """The actor's state (the attribute name Dapr's SDK uses)."""
        return self._ctx.state

    def now(self) -> float:
        """The host's clock, Unix seconds."""
        return float(self._ctx.clock())

    async def on_activate(self) -> None:
        """Called once after the actor's state is loaded, before its first turn."""

    async def on_deactivate(self) -> None:
        """Called when the actor leaves memory (idle, deleted, host stopping); state changes are ignored."""

    async def register_reminder(
        self, name: str, state: bytes, due_time: timedelta, period: timedelta | None = None
    ) -> None:
        """Durably remind this actor after `due_time` (then every `period`, or once when None)."""
        self._ctx.set_reminder(name, state, due_time, period)

    async def unregister_reminder(self, name: str) -> None:
        """Remove reminder `name`; removing one that does not exist is not an error."""
        self._ctx.remove_reminder(name)

    async def receive_reminder(
        self, name: str, state: bytes, due_time: timedelta, period: timedelta | None
    ) -> None:
        """Called in a turn of its own when a reminder is due; must be idempotent (at-least-once)."""
        raise NotImplementedError(
            f"{type(self).__name__} registered reminder {name!r} but does not handle it"
        )

    def publish(self, event: object) -> None:
        """Hand `event` to the host's event sink once this turn's write is durable, in turn order."""
        self._ctx.emit(event)

    def put_record(self, record: Record) -> None:
        """Write `record` (see `Record`) with this turn's changes, in the same transaction."""
        self._ctx.put_record(record)
