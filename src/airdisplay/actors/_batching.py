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
and the actor leaves memory after the batch unless calls wait for it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ._records import ReminderRecord


@dataclass(frozen=True, slots=True)
class ReminderEffect:
    """What one reminder changes: encoded state values to set, keys to remove, events to publish."""

    state_set: tuple[tuple[str, bytes], ...] = ()
    state_removed: tuple[str, ...] = ()
    events: tuple[object, ...] = ()


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
