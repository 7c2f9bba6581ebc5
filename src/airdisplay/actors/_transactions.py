"""The writer's transactions: a batch of writes applied in one, and the failures that are write faults."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from ._records import Record, RecordPrune, ReminderBatchWrite, TurnWrite

T = TypeVar("T")
Write = TurnWrite | ReminderBatchWrite | RecordPrune

#: Errors after which writes cannot succeed until something outside the process changes (primary result
#: codes; a full tmpfs reports a WAL index it cannot grow as SQLITE_IOERR_SHMSIZE).
WRITE_FAULTS = {
    sqlite3.SQLITE_FULL: "the disk holding the banner store is full",
    sqlite3.SQLITE_IOERR: "the banner store's file system fails writes (I/O error)",
    sqlite3.SQLITE_READONLY: "the banner store's file system is read-only",
}


def transaction(conn: sqlite3.Connection, apply: Callable[[sqlite3.Connection], T]) -> T:
    """`apply(conn)` in one write transaction: committed, or rolled back and its error raised."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = apply(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (it does on SQLITE_FULL)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    return result


def write_fault(exc: BaseException) -> str | None:
    """What keeps writes from succeeding, if `exc` says so; None for other errors (busy, locked, bugs)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, sqlite3.Error) or code is None:
        return None
    if code == sqlite3.SQLITE_IOERR_SHMSIZE:  # no room to grow the WAL index
        code = sqlite3.SQLITE_FULL
    return WRITE_FAULTS.get(code & 0xFF)


def actors_changed(write: Write) -> int:
    """Actors a write changes: a turn changes one, a reminder batch one per reminder."""
    return len(write) if isinstance(write, ReminderBatchWrite) else 1


def apply_batch(conn: sqlite3.Connection, writes: list[Write]) -> list[bool]:
    """Apply a batch of writes, one statement per kind of change (executemany keeps the loop in C).

    A batch holds at most one write per actor (a turn or a reminder batch keeps its actors until its write
    is durable), so grouping by kind keeps each turn's own order: fired reminder, reminders, then state.
    """
    turns = [w for w in writes if isinstance(w, TurnWrite)]
    batches = [w for w in writes if isinstance(w, ReminderBatchWrite)]
    pruned = {id(w): prune_records(conn, w) for w in writes if isinstance(w, RecordPrune)}
    matched = {id(t): apply_fired(conn, t) for t in turns if t.fired is not None}
    fired = [(r.actor_type, r.actor_id, r.name, r.due_at) for b in batches for r in b.fired]
    if fired:
        conn.executemany(
            "DELETE FROM reminders WHERE actor_type=? AND actor_id=? AND name=? AND due_at=?", fired
        )
    removed = [(t.actor_type, t.actor_id, name) for t in turns for name in t.reminders_removed]
    if removed:
        conn.executemany("DELETE FROM reminders WHERE actor_type=? AND actor_id=? AND name=?", removed)
    reminders = [
        (t.actor_type, t.actor_id, r.name, r.due_at, r.period, r.data) for t in turns for r in t.reminders_set
    ]
    if reminders:
        conn.executemany(
            "INSERT OR REPLACE INTO reminders (actor_type, actor_id, name, due_at, period, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            reminders,
        )
    gone = [(t.actor_type, t.actor_id, key) for t in turns for key in t.state_removed]
    gone += [row for b in batches for row in b.state_removed]
    if gone:
        conn.executemany("DELETE FROM actor_state WHERE actor_type=? AND actor_id=? AND key=?", gone)
    values = [(t.actor_type, t.actor_id, key, value) for t in turns for key, value in t.state_set]
    values += [row for b in batches for row in b.state_set]
    if values:
        conn.executemany(
            "INSERT OR REPLACE INTO actor_state (actor_type, actor_id, key, value) VALUES (?, ?, ?, ?)",
            values,
        )
    records = [(t.actor_type, t.actor_id, r) for t in turns for r in t.records]
    records += [row for b in batches for row in b.records]
    if records:
        apply_records(conn, records)
    return [pruned.get(id(w), matched.get(id(w), True)) for w in writes]


def prune_records(conn: sqlite3.Connection, prune: RecordPrune) -> bool:
    """Delete the oldest records of a prune (by the time index); True if it deleted its whole limit."""
    cur = conn.execute(
        "DELETE FROM actor_records WHERE (actor_type, at, actor_id, record_id) IN ("
        "SELECT actor_type, at, actor_id, record_id FROM actor_records WHERE actor_type=? AND at<? "
        "ORDER BY at LIMIT ?)",
        (prune.actor_type, prune.before, prune.limit),
    )
    return cur.rowcount >= prune.limit


def apply_records(conn: sqlite3.Connection, records: list[tuple[str, str, Record]]) -> None:
    """Write records (one statement, executemany): each is inserted, or merged into the stored record of
    its key (see `Record`)."""
    conn.executemany(
        "INSERT INTO actor_records (actor_type, actor_id, at, record_id, value) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (actor_type, actor_id, at, record_id) DO UPDATE SET "
        "value=CAST(json_patch(CAST(value AS TEXT), CAST(excluded.value AS TEXT)) AS BLOB)",
        [(t, a, r.at, r.record_id, r.value) for t, a, r in records],
    )


def apply_fired(conn: sqlite3.Connection, turn: TurnWrite) -> bool:
    """Retire the reminder a turn handled, if it is still that registration; True if it was."""
    fired = turn.fired
    assert fired is not None
    if turn.fired_next_due is None:
        cur = conn.execute(
            "DELETE FROM reminders WHERE actor_type=? AND actor_id=? AND name=? AND due_at=?",
            (turn.actor_type, turn.actor_id, fired.name, fired.due_at),
        )
    else:
        cur = conn.execute(
            "UPDATE reminders SET due_at=? WHERE actor_type=? AND actor_id=? AND name=? AND due_at=?",
            (turn.fired_next_due, turn.actor_type, turn.actor_id, fired.name, fired.due_at),
        )
    return cur.rowcount == 1
