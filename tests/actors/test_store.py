"""Opening the SQLite store: clear errors for files and directories it cannot use; a full disk."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from airdisplay.actors import SqliteStore, StoreError
from airdisplay.actors import _store as store_module
from airdisplay.actors._records import TurnWrite
from airdisplay.actors._store import APPLY_SLICE, SCHEMA_2_RECORDS
from airdisplay.actors.exceptions import StoreReadOnly
from tests.conftest import eventually
from tests.small_disk import fill, small_disk


def test_new_database_is_created_in_wal_mode(tmp_path):
    SqliteStore(tmp_path / "new" / "actors.db").verify()
    with sqlite3.connect(tmp_path / "new" / "actors.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_corrupt_file_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "actors.db"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="cannot use .*actors.db"):
        SqliteStore(path).verify()


def test_another_programs_database_is_refused(tmp_path):
    path = tmp_path / "actors.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StoreError, match="another program"):
        SqliteStore(path).verify()


def test_data_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot create data directory"):
        SqliteStore(tmp_path / "file" / "actors.db").verify()


def test_database_path_that_is_a_directory_is_refused(tmp_path):
    (tmp_path / "actors.db").mkdir()
    with pytest.raises(StoreError, match="is a directory"):
        SqliteStore(tmp_path / "actors.db").verify()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_read_only_directory_is_refused(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(StoreError):
            SqliteStore(tmp_path / "actors.db").verify()
    finally:
        tmp_path.chmod(0o700)


#: Larger than any WAL these tests leave behind, so that writing it needs new space on the disk.
BIG = 256 * 1024


def turn(actor_id: str, value: bytes) -> TurnWrite:
    return TurnWrite("banner", actor_id, state_set=[("banner", value)])


@pytest.fixture
def disk(tmp_path) -> Iterator[Path]:
    """A real 1 MiB file system (tests/small_disk.py)."""
    with small_disk(tmp_path / "disk", "1m") as mount:
        yield mount


async def test_a_write_that_finds_the_disk_full_makes_the_store_refuse_writes_until_space_is_back(disk):
    store = SqliteStore(disk / "actors.db")
    store.open(asyncio.get_running_loop())
    try:
        await store.write(turn("a", b"kept"))
        filler = fill(disk)
        with pytest.raises(StoreReadOnly, match="full"):
            await store.write(turn("b", os.urandom(BIG)))
        assert store.write_refusal is not None and "disk" in store.write_refusal
        with pytest.raises(StoreReadOnly):  # refused at once: nothing changed on the disk
            await store.write(turn("c", b"small"))
        assert await store.read_actor("banner", "a") == {"banner": b"kept"}
        filler.unlink()
        await eventually(lambda: store.write_refusal is None, what="writes to be taken again")
        await store.write(turn("b", b"x" * BIG))
        assert await store.read_actor("banner", "b") == {"banner": b"x" * BIG}
    finally:
        await store.close()


async def test_a_database_on_a_full_disk_opens_refusing_writes_and_serves_reads(disk):
    path = disk / "actors.db"
    store = SqliteStore(path)
    store.open(asyncio.get_running_loop())
    await store.write(turn("a", b"kept"))
    await store.close()
    assert not path.with_name("actors.db-shm").exists()  # so opening must do without a WAL index file
    filler = fill(disk)

    SqliteStore(path).verify()
    store = SqliteStore(path)
    store.open(asyncio.get_running_loop())
    try:
        assert store.write_refusal is not None and "full" in store.write_refusal
        assert await store.read_actor("banner", "a") == {"banner": b"kept"}
        assert store.page_state("banner", "banner", None, 10) == [("a", b"kept")]
        with pytest.raises(StoreReadOnly):
            await store.write(turn("b", b"new"))
        filler.unlink()
        await eventually(lambda: store.write_refusal is None, what="writes to be taken again")
        await store.write(turn("b", b"new"))
    finally:
        await store.close()
    reopened = SqliteStore(path)
    reopened.open(asyncio.get_running_loop())
    try:
        assert await reopened.read_actor("banner", "b") == {"banner": b"new"}
    finally:
        await reopened.close()


def test_a_new_database_on_a_full_disk_is_refused_with_a_clear_error(disk):
    fill(disk)
    with pytest.raises(StoreError, match="cannot use .*actors.db"):
        SqliteStore(disk / "actors.db").verify()


async def test_a_bulk_import_is_one_transaction_all_or_nothing_and_reads_back_like_turns(tmp_path):
    path = tmp_path / "actors.db"
    store = SqliteStore(path)
    with pytest.raises(RuntimeError, match="bad row"), store.bulk_import() as load:
        load.add("lamp", [("l1", "on", b"true")])
        raise RuntimeError("bad row")  # the importer gives up half-way: nothing of it is kept
    with store.bulk_import(field_indexes=[("lamp", "name")]) as load:
        load.add("lamp", [("l1", "lamp", b'{"name":"Porch"}'), ("l2", "lamp", b'{"name":"Hall"}')])
        assert load.registered("lamp", "lamp", ["l1", "l3"]) == {"l1"}  # earlier in the same import
        with pytest.raises(StoreError, match="importing into"):
            load.add("lamp", [("l1", "lamp", b"{}")])  # an entry that exists already
    store.open(asyncio.get_running_loop())
    try:
        assert await store.read_actor("lamp", "l2") == {"lamp": b'{"name":"Hall"}'}
        assert [actor for actor, _ in store.search_state("lamp", "lamp", "name", "por", None, 10)] == ["l1"]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        indexes = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "state_lamp_name" in indexes


@pytest.mark.parametrize(
    ("held", "groups_committed", "settled_first"),
    [
        ("before its writes are applied", [2, 20], ["urgent", "first"]),
        ("after its writes were applied", [1, 1, 20], ["first", "urgent"]),
    ],
)
async def test_an_urgent_write_is_committed_ahead_of_the_writes_queued_before_it(
    tmp_path, held, groups_committed, settled_first
):
    """The writer is held in a transaction while 20 writes and then an urgent one queue up: the urgent one
    is durable first, and then the others, all of them, in the order they came. Held before the
    transaction's writes are applied, the urgent one joins it, and is settled ahead of the write it joined
    (its turn goes on first); held after (as good as committing), it comes next, alone in its
    transaction."""
    store = SqliteStore(tmp_path / "actors.db")
    store.open(asyncio.get_running_loop())
    inside, release = threading.Event(), threading.Event()
    commit = store._commit
    groups: list[int] = []

    def hold() -> None:
        inside.set()
        release.wait(10)

    def held_commit(conn, apply):
        def held_apply(conn):
            if held.startswith("before"):
                hold()
            results = apply(conn)
            if held.startswith("after"):
                hold()
            return results

        results = commit(conn, held_apply if not groups else apply)
        groups.append(len(results))
        return results

    store._commit = held_commit  # type: ignore[method-assign]
    try:
        done: list[str] = []
        first = store.write(turn("first", b"1"))
        await asyncio.to_thread(inside.wait, 10)
        queued = [store.write(turn(f"q{i:02d}", b"q")) for i in range(20)]
        urgent = store.write(turn("urgent", b"u"), urgent=True)
        for name, future in [("first", first), ("urgent", urgent)] + [
            (f"q{i:02d}", f) for i, f in enumerate(queued)
        ]:
            future.add_done_callback(lambda _, name=name: done.append(name))
        release.set()
        await asyncio.gather(first, urgent, *queued)
        assert done == settled_first + [f"q{i:02d}" for i in range(20)]
        assert groups == groups_committed
        assert await store.read_actor("banner", "urgent") == {"banner": b"u"}
    finally:
        release.set()
        await store.close()


async def test_an_urgent_write_does_not_wait_for_the_rest_of_a_large_transaction(tmp_path, monkeypatch):
    """600 writes go into one transaction; an urgent write comes while its first slice (APPLY_SLICE actors)
    is applied: that slice is committed with the urgent write, settled urgent first, and the other 350
    writes follow in a transaction of their own. All are durable, none twice."""
    store = SqliteStore(tmp_path / "actors.db")
    store.open(asyncio.get_running_loop())
    inside, release = threading.Event(), threading.Event()
    sliced, urgent_queued = threading.Event(), threading.Event()
    commit = store._commit
    groups: list[int] = []

    def held_commit(conn, apply):
        if not groups:  # the first transaction: hold it while the 600 queue up behind it
            inside.set()
            release.wait(10)
        results = commit(conn, apply)
        groups.append(len(results))
        return results

    apply_batch = store_module.apply_batch

    def spied_apply(conn, writes):
        results = apply_batch(conn, writes)
        if len(writes) == APPLY_SLICE and not sliced.is_set():  # the first slice of the 600 is applied
            sliced.set()
            urgent_queued.wait(10)
        return results

    store._commit = held_commit  # type: ignore[method-assign]
    monkeypatch.setattr(store_module, "apply_batch", spied_apply)
    try:
        first = store.write(turn("first", b"1"))
        await asyncio.to_thread(inside.wait, 10)
        queued = [store.write(turn(f"q{i:03d}", b"q")) for i in range(600)]
        release.set()
        await asyncio.to_thread(sliced.wait, 10)
        urgent = store.write(turn("urgent", b"u"), urgent=True)
        done: list[str] = []
        urgent.add_done_callback(lambda _: done.append("urgent"))
        queued[0].add_done_callback(lambda _: done.append("q000"))
        urgent_queued.set()
        assert all(await asyncio.gather(first, urgent, *queued))
        assert groups == [1, APPLY_SLICE + 1, 600 - APPLY_SLICE]
        assert done == ["urgent", "q000"]
        assert await store.read_actor("banner", "urgent") == {"banner": b"u"}
        assert await store.read_actor("banner", "q599") == {"banner": b"q"}
    finally:
        release.set()
        urgent_queued.set()
        await store.close()


async def test_an_urgent_read_is_answered_ahead_of_the_reads_queued_before_it(tmp_path):
    """The reader thread is held inside a read while 20 more queue up; an urgent activation read asked
    after them is answered first, on its own, right after the read in progress."""
    store = SqliteStore(tmp_path / "actors.db")
    store.open(asyncio.get_running_loop())
    inside, release = threading.Event(), threading.Event()

    def held(conn):
        inside.set()
        release.wait(10)
        return "held"

    try:
        await store.write(turn("urgent", b"u"))
        done: list[str] = []
        first = asyncio.ensure_future(store._read(held))
        await asyncio.to_thread(inside.wait, 10)
        queued = [asyncio.ensure_future(store._read(lambda conn, i=i: f"q{i:02d}")) for i in range(20)]
        await asyncio.sleep(0)  # the queued reads are on the reader's queue
        urgent = asyncio.ensure_future(store.read_actor("banner", "urgent", urgent=True))
        await asyncio.sleep(0)
        for future in [first, urgent, *queued]:
            future.add_done_callback(
                lambda f: done.append("urgent" if isinstance(f.result(), dict) else f.result())
            )
        release.set()
        await asyncio.gather(first, urgent, *queued)
        assert done == ["held", "urgent"] + [f"q{i:02d}" for i in range(20)]
        assert urgent.result() == {"banner": b"u"}
    finally:
        release.set()
        await store.close()


async def test_the_switch_interval_is_lowered_only_while_an_urgent_write_or_read_is_on_its_way(tmp_path):
    """The store's threads then wait at most URGENT_SWITCH_INTERVAL for the GIL after each SQLite step,
    and the interpreter's own interval is back once nothing urgent is left (ordinary ones never lower it)."""
    import sys

    store = SqliteStore(tmp_path / "actors.db")
    store.open(asyncio.get_running_loop())
    before = sys.getswitchinterval()
    try:
        ordinary = store.write(turn("a", b"1"))
        assert sys.getswitchinterval() == before
        await ordinary
        urgent = [store.write(turn("b", b"2"), urgent=True), store.write(turn("c", b"3"), urgent=True)]
        read = asyncio.ensure_future(store.read_actor("banner", "a", urgent=True))
        await asyncio.sleep(0)  # the read queued
        assert sys.getswitchinterval() == store_module.URGENT_SWITCH_INTERVAL
        await asyncio.gather(*urgent, read)
        await eventually(lambda: sys.getswitchinterval() == before, what="the interval restored")
        assert await store.read_actor("banner", "c") == {"banner": b"3"}
    finally:
        await store.close()
        sys.setswitchinterval(before)


#: Two banners' entries, their times interleaved, and a lamp's.
SCHEMA_2_ROWS = [
    ("banner", "b1", 30.0, "m3", b'{"n":3}'),
    ("banner", "b2", 20.0, "m2", b'{"n":2}'),
    ("banner", "b1", 10.0, "m1", b'{"n":1}'),
    ("banner", "b2", 40.0, "m4", b'{"n":4}'),
    ("lamp", "l1", 15.0, "x", b"{}"),
]


def schema_2_file(path: Path, rows: list[tuple[str, str, float, str, bytes]]) -> None:
    SqliteStore(path).verify()
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.executescript(SCHEMA_2_RECORDS)
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO actor_records VALUES (?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")


def records_layout(path: Path) -> tuple[int, list[str], set[str]]:
    """The file's schema version, the columns its records are kept in order of, and their indexes."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        order = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM pragma_index_info('sqlite_autoindex_actor_records_1')"
            )
        ]
        indexes = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='actor_records' "
                "AND sql IS NOT NULL"
            )
        }
    return version, order, indexes


async def test_a_schema_2_file_has_its_records_rewritten_in_time_order_once_and_keeps_them_all(
    tmp_path, caplog
):
    path = tmp_path / "actors.db"
    schema_2_file(path, SCHEMA_2_ROWS)
    assert records_layout(path) == (2, ["actor_type", "actor_id", "at", "record_id"], {"records_by_time"})

    with caplog.at_level("WARNING", logger="airdisplay.store"):
        SqliteStore(path).verify()
        SqliteStore(path).verify()  # the second start finds it done
    assert [r.getMessage() for r in caplog.records if "rewriting" in r.getMessage()] == [
        "rewriting 5 actor records in time order (schema 2 to 3), once"
    ]
    assert records_layout(path) == (3, ["actor_type", "at", "actor_id", "record_id"], {"records_by_actor"})

    store = SqliteStore(path)
    store.open(asyncio.get_running_loop())
    try:
        assert store.records_of("banner", "b1", None, 10) == [
            (30.0, "m3", b'{"n":3}'),
            (10.0, "m1", b'{"n":1}'),
        ]
        assert store.records_of("banner", "b1", (30.0, "m3"), 10) == [(10.0, "m1", b'{"n":1}')]
        assert [r[:3] for r in store.records_between("banner", 0, 100, None, 10)] == [
            ("b1", 10.0, "m1"),
            ("b2", 20.0, "m2"),
            ("b1", 30.0, "m3"),
            ("b2", 40.0, "m4"),
        ]
        assert store.records_between("lamp", 0, 100, None, 10) == [("l1", 15.0, "x", b"{}")]
    finally:
        await store.close()


def test_a_rewrite_that_fails_leaves_the_schema_2_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "actors.db"
    schema_2_file(path, SCHEMA_2_ROWS)
    failing = store_module._RECORDS_IN_TIME_ORDER.replace(
        "PRAGMA user_version=3;", "INSERT INTO no_such_table VALUES (1);"
    )
    monkeypatch.setattr(store_module, "_RECORDS_IN_TIME_ORDER", failing)
    with pytest.raises(StoreError, match="no such table"):
        SqliteStore(path).verify()
    assert records_layout(path) == (2, ["actor_type", "actor_id", "at", "record_id"], {"records_by_time"})
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert sorted(conn.execute("SELECT * FROM actor_records")) == sorted(SCHEMA_2_ROWS)


async def test_a_schema_2_file_on_a_full_disk_is_used_as_it_is_and_rewritten_at_a_start_with_room(disk):
    path = disk / "actors.db"
    rows = [("banner", f"b{i % 7}", float(i), f"m{i}", b"x" * 100) for i in range(1000)]  # ~150 KB
    schema_2_file(path, rows)
    filler = fill(disk)

    store = SqliteStore(path)
    store.open(asyncio.get_running_loop())
    try:
        assert store.write_refusal is not None and "full" in store.write_refusal
        assert len(store.records_between("banner", 0, 5000, None, 5000)) == 1000
        assert store.records_of("banner", "b5", None, 1) == [(999.0, "m999", b"x" * 100)]
    finally:
        await store.close()

    filler.unlink()
    assert records_layout(path)[0] == 2
    SqliteStore(path).verify()
    assert records_layout(path) == (3, ["actor_type", "at", "actor_id", "record_id"], {"records_by_actor"})
