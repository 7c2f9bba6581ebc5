"""Errors of the actor runtime."""

from __future__ import annotations

from pathlib import Path


class RuntimeClosed(RuntimeError):
    """Raised when a call reaches an actor host that is not running (not started yet, or stopped)."""


class StoreError(RuntimeError):
    """Raised when the state store cannot be opened or written: unwritable path, corrupt or foreign file."""


class StoreReadOnly(StoreError):
    """Raised when the store refuses a write because writes cannot succeed now (disk full, failing file
    system); it still answers reads, and takes writes again once a probe write lands."""


class StoreInUse(StoreError):
    """Raised when another process holds the store's lock; `pid` is that process (None if unreadable)."""

    def __init__(self, database: Path, pid: int | None) -> None:
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(f"{database} is in use by {holder}")
        self.database = database
        self.pid = pid


class UnknownActorType(LookupError):
    """Raised when a call names an actor type that was never registered with the host."""


class UnknownActorMethod(AttributeError):
    """Raised when a call passes a method the actor type's class does not expose (only the public coroutine
    methods it adds to Actor are callable)."""


class ActivationFailed(RuntimeError):
    """Raised when an actor's state cannot be loaded or its on_activate hook raised; the call is not run."""
