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

    def __bool__(self) -> bool:
        return bool(
            self.state_set or self.state_removed or self.reminders_set or self.reminders_removed or self.fired
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

    def __len__(self) -> int:
        return len(self.fired)
