"""Errors of the access package."""

from __future__ import annotations


class KeyFileError(ValueError):
    """Raised when the keys file cannot be read or is not an AirDisplay keys file."""


class UnknownKey(LookupError):
    """Raised when a key id names no stored key."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no key with id {key_id!r}")
        self.key_id = key_id


class BlocklistError(ValueError):
    """Raised when the blocklist file cannot be read or holds a bad pattern."""
