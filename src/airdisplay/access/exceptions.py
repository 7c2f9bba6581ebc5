"""Errors of the access package."""

from __future__ import annotations


class KeyFileError(ValueError):
    """Raised when the keys file cannot be read or is not an AirDisplay keys file."""


class StartupKeyError(ValueError):
    """Raised when the operator key given at start-up cannot guard the server: too short for where it
    listens, or naming a stored key that is not an operator key."""


class OperatorKeysRemain(RuntimeError):
    """Raised when operator routes are to be opened again while the keys file still holds operator keys."""

    def __init__(self, key_ids: list[str]) -> None:
        super().__init__(
            f"the keys file still holds operator keys ({', '.join(key_ids)}); revoke them first "
            "('airdisplay keys revoke <id>')"
        )
        self.key_ids = key_ids


class UnknownKey(LookupError):
    """Raised when a key id names no stored key."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no key with id {key_id!r}")
        self.key_id = key_id


class BlocklistError(ValueError):
    """Raised when the blocklist file cannot be read or holds a bad pattern."""
