"""The writer's transactions: a batch of writes applied in one, and the failures that are write faults."""

from __future__ import annotations

import contextlib
import functools
import itertools
import sqlite3
from collections.abc import Callable, Sequence
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


#: The most rows one statement writes. A list of rows goes in statements of ROWS_PER_STATEMENT, the last
#: padded to a power of two (so each kind of change has 9 statement texts for the connection's cache).
#:
#: Why not executemany, one SQLite step per row: the writer thread lets go of the GIL for every step and
#: waits to take it back, up to the 5 ms switch interval, while the event loop runs Python. A slice of a
#: reminder batch (250 actors, four kinds of change) took p50 1,158 ms so beside a busy thread and 32 ms in
#: one statement per kind (142 ms in six of 128 + 64 + ... rows, unpadded); 3 ms unloaded either way
#: (bench/gil_convoy.py, docs/benchmarks/results/gil_convoy.md).
ROWS_PER_STATEMENT = 256


def execute_rows(conn: sqlite3.Connection, template: str, rows: Sequence[Sequence[object]]) -> None:
    """Run `template` for every row of `rows`, ROWS_PER_STATEMENT rows a statement: one SQLite step each.

    `template` holds `{rows}` where the rows go, as `(?, ?), (?, ?)`: after VALUES in an INSERT, inside
    `(SELECT column1, column2 FROM (VALUES {rows}))` for a DELETE (that form searches the primary key; a
    bare `IN (VALUES ...)` scanned the whole table). Rows are applied in order, as executemany would. The
    last statement is padded with its last row again: the statements here all leave a row written twice
    as they leave it written once (replace, delete, an RFC 7396 merge patch), and the last row stays last.
    """
    if not rows:
        return
    width = len(rows[0])
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        size = 1 << (len(chunk) - 1).bit_length()
        params = list(itertools.chain.from_iterable(chunk))
        if size > len(chunk):
            params.extend(tuple(chunk[-1]) * (size - len(chunk)))
        conn.execute(_statement(template, size, width), params)


@functools.cache
def _statement(template: str, size: int, width: int) -> str:
    row = "(" + ", ".join("?" * width) + ")"
    return template.format(rows=", ".join([row] * size))


def actors_changed(write: Write) -> int:
    """Actors a write changes: a turn changes one, a reminder batch one per reminder."""
    return len(write) if isinstance(write, ReminderBatchWrite) else 1


def apply_batch(conn: sqlite3.Connection, writes: list[Write]) -> list[bool]:
    """Apply a batch of writes, a few statements of many rows per kind of change (`execute_rows`).

    A batch holds at most one write per actor (a turn or a reminder batch keeps its actors until its write
    is durable), so grouping by kind keeps each turn's own order: fired reminder, reminders, then state.
    """
    turns = [w for w in writes if isinstance(w, TurnWrite)]
    batches = [w for w in writes if isinstance(w, ReminderBatchWrite)]
    pruned = {id(w): prune_records(conn, w) for w in writes if isinstance(w, RecordPrune)}
    matched = {id(t): apply_fired(conn, t) for t in turns if t.fired is not None}
    fired = [(r.actor_type, r.actor_id, r.name, r.due_at) for b in batches for r in b.fired]
    execute_rows(
        conn,
        "DELETE FROM reminders WHERE (actor_type, actor_id, name, due_at) IN "
        "(SELECT column1, column2, column3, column4 FROM (VALUES {rows}))",
        fired,
    )
    removed = [(t.actor_type, t.actor_id, name) for t in turns for name in t.reminders_removed]
    execute_rows(
        conn,
        "DELETE FROM reminders WHERE (actor_type, actor_id, name) IN "
        "(SELECT column1, column2, column3 FROM (VALUES {rows}))",
        removed,
    )
    reminders = [
        (t.actor_type, t.actor_id, r.name, r.due_at, r.period, r.data) for t in turns for r in t.reminders_set
    ]
    execute_rows(
        conn,
        "INSERT OR REPLACE INTO reminders (actor_type, actor_id, name, due_at, period, data) VALUES {rows}",
        reminders,
    )
    gone = [(t.actor_type, t.actor_id, key) for t in turns for key in t.state_removed]
    gone += [row for b in batches for row in b.state_removed]
    execute_rows(
        conn,
        "DELETE FROM actor_state WHERE (actor_type, actor_id, key) IN "
        "(SELECT column1, column2, column3 FROM (VALUES {rows}))",
        gone,
    )
    values = [(t.actor_type, t.actor_id, key, value) for t in turns for key, value in t.state_set]
    values += [row for b in batches for row in b.state_set]
    execute_rows(
        conn, "INSERT OR REPLACE INTO actor_state (actor_type, actor_id, key, value) VALUES {rows}", values
    )
    records = [(t.actor_type, t.actor_id, r) for t in turns for r in t.records]
    records += [row for b in batches for row in b.records]
    if records:
        apply_records(conn, records)
    return [pruned.get(id(w), matched.get(id(w), True)) for w in writes]


def prune_records(conn: sqlite3.Connection, prune: RecordPrune) -> bool:
    """Delete the oldest records of a prune (the table is in time order); True if it deleted its whole
    limit."""
    cur = conn.execute(
        "DELETE FROM actor_records WHERE (actor_type, at, actor_id, record_id) IN ("
        "SELECT actor_type, at, actor_id, record_id FROM actor_records WHERE actor_type=? AND at<? "
        "ORDER BY at LIMIT ?)",
        (prune.actor_type, prune.before, prune.limit),
    )
    return cur.rowcount >= prune.limit


def apply_records(conn: sqlite3.Connection, records: list[tuple[str, str, Record]]) -> None:
    """Write records (`execute_rows`): each is inserted, or merged into the stored record of its key (see
    `Record`), in order."""
    execute_rows(
        conn,
        "INSERT INTO actor_records (actor_type, actor_id, at, record_id, value) VALUES {rows} "
        "ON CONFLICT (actor_type, at, actor_id, record_id) DO UPDATE SET "
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
