"""Why a fleet cannot be set up: each error's message says what to do about it."""

from __future__ import annotations


class ServerUnreachable(ConnectionError):
    """Raised when no AirDisplay server answers at the simulator's URL."""


class KeyRequired(PermissionError):
    """Raised when the server refuses the set-up calls for want of a valid operator key."""


class UnknownBanners(LookupError):
    """Raised when a banner to re-key is not registered and the simulator was not asked to create it."""


class SetupFailed(RuntimeError):
    """Raised when the server answers a set-up call in a way the simulator cannot go on from."""
