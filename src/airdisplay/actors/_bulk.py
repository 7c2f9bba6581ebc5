"""Writing many actors' state in one transaction, with no host running: an offline import (onboarding).

Failure rules: everything written through a `StateImport` commits when its block ends and is rolled back
if the block raises, so an import is all or nothing. Any SQLite failure inside it is a StoreError.
The caller holds the store's lock (actors/_lock.py): no server writes meanwhile.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from .exceptions import StoreError

#: Actor ids per query of `registered`: well under SQLite's 32,766 bound parameters.
ID_CHUNK = 500


class StateImport:
    """State entries written inside one open transaction; `SqliteStore.bulk_import` hands one out."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._path = path

    def registered(self, actor_type: str, key: str, actor_ids: Sequence[str]) -> set[str]:
        """Those of `actor_ids` that already have a state entry `key` (in the store, or imported earlier)."""
        found: set[str] = set()
        for start in range(0, len(actor_ids), ID_CHUNK):
            chunk = actor_ids[start : start + ID_CHUNK]
            rows = self._execute(
                f"SELECT actor_id FROM actor_state WHERE actor_type=? AND key=? "
                f"AND actor_id IN ({','.join('?' * len(chunk))})",
                (actor_type, key, *chunk),
            ).fetchall()
            found.update(actor_id for (actor_id,) in rows)
        return found

    def add(self, actor_type: str, entries: Iterable[tuple[str, str, bytes]]) -> None:
        """Write (actor id, key, encoded value) entries; an entry that exists already is a StoreError."""
        rows = ((actor_type, actor_id, key, value) for actor_id, key, value in entries)
        try:
            self._conn.executemany(
                "INSERT INTO actor_state (actor_type, actor_id, key, value) VALUES (?, ?, ?, ?)", rows
            )
        except sqlite3.Error as exc:
            raise StoreError(f"importing into {self._path} failed: {exc}") from None

    def _execute(self, sql: str, params: Sequence[object]) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"importing into {self._path} failed: {exc}") from None
