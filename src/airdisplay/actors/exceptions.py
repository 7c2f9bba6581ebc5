"""Errors of the actor runtime."""

from __future__ import annotations


class RuntimeClosed(RuntimeError):
    """Raised when a call reaches an actor host that is not running (not started yet, or stopped)."""


class StoreError(RuntimeError):
    """Raised when the state store cannot be opened or written: unwritable path, corrupt or foreign file."""


class UnknownActorType(LookupError):
    """Raised when a call names an actor type that was never registered with the host."""


class UnknownActorMethod(AttributeError):
    """Raised when a call names a method the actor type does not expose (public coroutine methods only)."""


class ActivationFailed(RuntimeError):
    """Raised when an actor's state cannot be loaded or its on_activate hook raised; the call is not run."""
