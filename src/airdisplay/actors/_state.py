"""Per-actor state manager: a cache of decoded values plus the changes of the running turn."""

from __future__ import annotations

import json
from typing import Any

from ._records import TurnWrite

_MISSING = object()


def encode(value: Any) -> bytes:
    """Our own JSON encoding of a state value: plain JSON, no type guessing on the way back.

    `bytes` are JSON encoded already (a model's `model_dump_json`) and are stored as they are, the way
    Dapr's state serializer here passes them through (runtimes/dapr/_serializer.py).
    """
    if isinstance(value, bytes):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def decode(raw: bytes) -> Any:
    """A stored value: a JSON object as its bytes, for its owner's model to parse (Pydantic's
    `model_validate_json` takes half the time of `json.loads` and validating the dict); anything else
    decoded."""
    if raw[:1] == b"{":
        return raw
    return json.loads(raw)


class ActorStateManager:
    """Key/value state of one actor, read and written like Dapr's actor state manager.

    Values are JSON-compatible Python values, or `bytes` holding JSON already encoded. A JSON object is
    read back as its stored bytes (see `decode`), other values decoded. Changes made during a turn stay
    pending until the turn's write is durable (`commit`) or are thrown away when the turn fails
    (`rollback`), so a failed turn never leaves partial state behind for the next one.
    """

    __slots__ = ("_committed", "_pending", "_encoded")

    def __init__(self, stored: dict[str, bytes]) -> None:
        # Committed values stay encoded and are decoded on every read, so an actor that mutates a value
        # it read and then fails cannot corrupt the committed state (objects: the immutable bytes).
        self._committed: dict[str, bytes] = dict(stored)
        self._pending: dict[str, Any] = {}
        self._encoded: dict[str, bytes] = {}

    async def get_state(self, key: str) -> Any:
        """The value of `key`; KeyError if it has none."""
        found, value = await self.try_get_state(key)
        if not found:
            raise KeyError(key)
        return value

    async def try_get_state(self, key: str) -> tuple[bool, Any]:
        value = self._pending.get(key, _MISSING)
        if value is not _MISSING:
            return True, value
        if key in self._pending:  # removed in this turn
            return False, None
        raw = self._committed.get(key)
        if raw is None:
            return False, None
        return True, decode(raw)

    async def contains_state(self, key: str) -> bool:
        return (await self.try_get_state(key))[0]

    async def set_state(self, key: str, value: Any) -> None:
        self._pending[key] = value

    async def remove_state(self, key: str) -> None:
        """Remove `key`; KeyError if it has no value."""
        if not await self.contains_state(key):
            raise KeyError(key)
        self._pending[key] = _MISSING

    # -- used by the host --------------------------------------------------------------------------

    def collect(self, turn: TurnWrite) -> None:
        """Add the pending changes to the turn's write."""
        for key, value in self._pending.items():
            if value is _MISSING:
                if key in self._committed:
                    turn.state_removed.append(key)
            else:
                raw = self._encoded[key] = encode(value)
                turn.state_set.append((key, raw))

    def commit(self) -> None:
        for key, value in self._pending.items():
            if value is _MISSING:
                self._committed.pop(key, None)
        self._committed.update(self._encoded)
        self.rollback()

    def rollback(self) -> None:
        self._pending.clear()
        self._encoded.clear()

    def stored(self, keys: tuple[str, ...]) -> dict[str, bytes]:
        """The committed, encoded values of `keys` (between turns: what the store holds)."""
        committed = self._committed
        return {key: committed[key] for key in keys if key in committed}

    def apply_stored(self, values: tuple[tuple[str, bytes], ...], removed: tuple[str, ...]) -> None:
        """Follow changes written to the store without a turn (a reminder batch), between turns."""
        for key in removed:
            self._committed.pop(key, None)
        self._committed.update(values)

    @property
    def is_empty(self) -> bool:
        """True when the actor has no committed state at all (it was never created, or was deleted)."""
        return not self._committed
