"""The writer's statements on a real SQLite file: many rows in a few statements, applied as in order."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import pytest

from airdisplay.actors import SqliteStore
from airdisplay.actors._records import Record, ReminderBatchWrite, ReminderRecord, TurnWrite
from airdisplay.actors._transactions import ROWS_PER_STATEMENT, apply_batch, transaction


@pytest.fixture
def conn(tmp_path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "actors.db"
    SqliteStore(path).verify()  # the store's own schema
    conn = sqlite3.connect(path, isolation_level=None)
    yield conn
    conn.close()


def reminder(actor_id: str, due_at: float = 100.0, name: str = "switch") -> ReminderRecord:
    return ReminderRecord("banner", actor_id, name, due_at, None, b"")


def statements_of(conn: sqlite3.Connection, writes: list) -> list[str]:
    """The statements `apply_batch` ran for `writes` (in one transaction, as the writer does)."""
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        transaction(conn, lambda c: apply_batch(c, writes))
    finally:
        conn.set_trace_callback(None)
    return [s for s in seen if s not in ("BEGIN IMMEDIATE", "COMMIT")]


def rows(conn: sqlite3.Connection, sql: str) -> list[tuple]:
    return conn.execute(sql).fetchall()


@pytest.mark.parametrize("n", [1, 2, 250, 300, 513])
def test_a_reminder_batch_of_n_actors_takes_a_few_statements_per_kind_of_change(conn, n):
    """Every row lands, in one statement per ROWS_PER_STATEMENT rows per kind: each statement is one SQLite
    step, one wait for the GIL, not one per row."""
    ids = [f"b{i:04d}" for i in range(n)]
    setup = [TurnWrite("banner", a, state_set=[("banner", b"old")], reminders_set=[reminder(a)]) for a in ids]
    setup.append(TurnWrite("banner", "other", reminders_set=[reminder("other")]))
    transaction(conn, lambda c: apply_batch(c, setup))
    batch = ReminderBatchWrite(
        fired=[reminder(a) for a in ids],
        state_set=[("banner", a, "banner", b"new") for a in ids],
        state_removed=[("banner", a, "queue") for a in ids],
        records=[("banner", a, Record("m1", 5.0, b'{"ended":"expired"}')) for a in ids],
    )
    ran = statements_of(conn, [batch])
    statements = -(-n // ROWS_PER_STATEMENT)
    for kind in (
        "DELETE FROM reminders",
        "DELETE FROM actor_state",
        "INSERT OR REPLACE INTO actor_state",
        "INSERT INTO actor_records",
    ):
        assert sum(s.startswith(kind) for s in ran) == statements
    assert rows(conn, "SELECT actor_id FROM reminders") == [("other",)]
    assert rows(conn, "SELECT count(*), min(value), max(value) FROM actor_state") == [(n, b"new", b"new")]
    assert rows(conn, "SELECT count(DISTINCT actor_id) FROM actor_records") == [(n,)]


def test_a_fired_reminder_registered_again_since_is_left(conn):
    """The delete matches the due time too: a reminder set again (another due time) is not the one fired."""
    transaction(
        conn, lambda c: apply_batch(c, [TurnWrite("banner", "b1", reminders_set=[reminder("b1", 200.0)])])
    )
    transaction(conn, lambda c: apply_batch(c, [ReminderBatchWrite(fired=[reminder("b1", 100.0)])]))
    assert rows(conn, "SELECT actor_id, due_at FROM reminders") == [("b1", 200.0)]


def test_rows_of_one_key_apply_in_order_as_one_by_one(conn):
    """Values of one key in one write: the last wins; parts of one record merge, in order (three rows: the
    statement is padded to four with the last row again, which changes nothing)."""
    parts = [b'{"text":"hi","ended":null,"acked":null}', b'{"ended":"cleared"}', b'{"acked":7,"text":null}']
    write = ReminderBatchWrite(
        state_set=[("banner", "b1", "banner", v) for v in (b"1", b"2", b"3")],
        records=[("banner", "b1", Record("m1", 5.0, part)) for part in parts],
    )
    transaction(conn, lambda c: apply_batch(c, [write]))
    assert rows(conn, "SELECT value FROM actor_state") == [(b"3",)]
    (value,) = rows(conn, "SELECT value FROM actor_records")[0]
    assert json.loads(value) == {"ended": "cleared", "acked": 7}


def test_turns_remove_and_set_reminders_and_state_across_many_actors(conn):
    ids = [f"b{i:03d}" for i in range(300)]
    transaction(
        conn,
        lambda c: apply_batch(
            c,
            [
                TurnWrite(
                    "banner", a, state_set=[("banner", b"x"), ("queue", b"q")], reminders_set=[reminder(a)]
                )
                for a in ids
            ],
        ),
    )
    later = [TurnWrite("banner", a, state_removed=["queue"], reminders_removed=["switch"]) for a in ids[:260]]
    assert transaction(conn, lambda c: apply_batch(c, later)) == [True] * 260
    assert rows(conn, "SELECT count(*) FROM reminders") == [(40,)]
    assert rows(conn, "SELECT count(*) FROM actor_state WHERE key='queue'") == [(40,)]
    assert rows(conn, "SELECT count(*) FROM actor_state WHERE key='banner'") == [(300,)]
