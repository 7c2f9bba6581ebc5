"""Embedded virtual-actor runtime: turn-based actors with durable state and reminders in SQLite."""

from ._actor import ActivationStatus, Actor, ActorContext
from ._batching import BatchHandler, ReminderBatching, ReminderEffect
from ._host import DEFAULT_IDLE_TIMEOUT, ActorHost
from ._lock import StoreLock
from ._records import ReminderRecord
from ._state import ActorStateManager
from ._store import SqliteStore, field_index_sql
from .exceptions import (
    ActivationFailed,
    RuntimeClosed,
    StoreError,
    StoreInUse,
    StoreReadOnly,
    UnknownActorMethod,
    UnknownActorType,
)

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "ActivationFailed",
    "ActivationStatus",
    "Actor",
    "ActorContext",
    "ActorHost",
    "ActorStateManager",
    "BatchHandler",
    "ReminderBatching",
    "ReminderEffect",
    "ReminderRecord",
    "RuntimeClosed",
    "SqliteStore",
    "field_index_sql",
    "StoreError",
    "StoreInUse",
    "StoreLock",
    "StoreReadOnly",
    "UnknownActorMethod",
    "UnknownActorType",
]
