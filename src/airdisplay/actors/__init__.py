"""Embedded virtual-actor runtime: turn-based actors with durable state and reminders in SQLite."""

from ._actor import ActivationStatus, Actor, ActorContext
from ._batching import NEEDS_TURN, BatchHandler, ReminderBatching, ReminderEffect
from ._bulk import StateImport
from ._host import DEFAULT_IDLE_TIMEOUT, ActorHost
from ._lock import StoreLock
from ._records import Record, RecordPrune, ReminderRecord
from ._state import ActorStateManager
from ._state import encode as encode_state
from ._stats import RuntimeStats
from ._store import Durability, SqliteStore, field_index_sql
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
    "Durability",
    "ReminderBatching",
    "ReminderEffect",
    "NEEDS_TURN",
    "ReminderRecord",
    "Record",
    "RecordPrune",
    "RuntimeClosed",
    "RuntimeStats",
    "SqliteStore",
    "StateImport",
    "StoreError",
    "StoreInUse",
    "StoreLock",
    "StoreReadOnly",
    "UnknownActorMethod",
    "UnknownActorType",
    "encode_state",
    "field_index_sql",
]
