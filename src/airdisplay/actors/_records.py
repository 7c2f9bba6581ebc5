"""Plain records passed between the actor host, the scheduler and the store (slotted: hot path)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ReminderRecord:
    """A durable reminder as stored: due time in Unix seconds, period None for one-shot."""

    actor_type: str
    actor_id: str
    name: str
    due_at: float
    period: float | None
    data: bytes

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.actor_type, self.actor_id, self.name)

    @property
    def cursor(self) -> tuple[float, str, str, str]:
        return (self.due_at, self.actor_type, self.actor_id, self.name)


@dataclass(frozen=True, slots=True)
class Record:
    """An entry of an actor's record (its history): written with the turn that makes it, kept after
    the actor's state changes, read by time (`SqliteStore.records_of`, `records_between`).

    `value` is a JSON object, written as an RFC 7396 merge patch of a stored record of that id and time
    (SQLite's json_patch), or as it is when there is none: a record may be written again with more in it.
    """

    record_id: str
    at: float
    value: bytes


@dataclass(slots=True)
class TurnWrite:
    """Everything one turn changes, written in one transaction (atomic per turn, grouped per commit)."""

    actor_type: str
    actor_id: str
    state_set: list[tuple[str, bytes]] = field(default_factory=list)
    state_removed: list[str] = field(default_factory=list)
    reminders_set: list[ReminderRecord] = field(default_factory=list)
    reminders_removed: list[str] = field(default_factory=list)
    #: The reminder this turn handled: deleted (one-shot) or moved to its next due time (periodic),
    #: but only if it is still the same registration (same due time) when the write lands.
    fired: ReminderRecord | None = None
    #: For a periodic `fired` reminder: its next due time.
    fired_next_due: float | None = None
    #: Records the turn writes (see `Record`): kept apart from the actor's state, queried by time.
    records: list[Record] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.state_set
            or self.state_removed
            or self.reminders_set
            or self.reminders_removed
            or self.fired
            or self.records
        )


@dataclass(slots=True)
class ReminderBatchWrite:
    """One-shot reminders handled in a batch outside of turns, and the state they changed: one transaction.

    Each reminder is deleted only if it is still that registration (same due time), like `TurnWrite.fired`.
    The batch holds each of its actors for itself until the write is durable, as a turn does.
    """

    fired: list[ReminderRecord] = field(default_factory=list)
    #: (actor type, actor id, key, encoded value)
    state_set: list[tuple[str, str, str, bytes]] = field(default_factory=list)
    #: (actor type, actor id, key)
    state_removed: list[tuple[str, str, str]] = field(default_factory=list)
    #: (actor type, actor id, record)
    records: list[tuple[str, str, Record]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.fired)


@dataclass(frozen=True, slots=True)
class RecordPrune:
    """Delete up to `limit` of the oldest records of an actor type made before `before` (Unix seconds),
    in the writer's order with turns; its result says whether it deleted `limit` (more may be left)."""

    actor_type: str
    before: float
    limit: int
