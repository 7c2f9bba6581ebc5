"""Durable actor state and reminders in one SQLite file (WAL), written by one thread with group commit.

Failure rules:
- A turn's write is acknowledged (its future resolves) only after the transaction holding it committed,
  with `synchronous=FULL` by default, so an acknowledged turn survives kill -9 and power loss; `NORMAL`
  survives kill -9 but may lose the last commits on power loss.
- A transaction holds up to `MAX_BATCH` turns. If it fails, every turn in it fails with StoreError and
  nothing of them is stored; the callers roll their actors back.
- A reminder batch (`write_batch`) is one item of a transaction: it commits or fails as a whole, with the
  turns around it.
- Activation reads run on a reader thread with a connection of its own, batched like the writes: a
  read on the event-loop thread gave up the GIL and then waited for the writer thread to hand it back
  (on one core, +50% submit throughput from moving them; bench/submit_vs_bare.py). Reminder batches
  read the state of all their actors there in one query. Listing and reminder pages, rarer and larger,
  stay on the loop thread with a second connection. A failed read fails only the activation (or the
  reminder batch) that asked for it.

Write faults (a full disk, a failing or read-only file system: `_transactions.write_fault`):
- A transaction that fails for one is rolled back; the writer then reclaims the WAL's space (a TRUNCATE
  checkpoint: a WAL holds every version of a page written since the last checkpoint, so it is mostly
  reclaimable) and tries the transaction once more. If that fails too, its turns fail with StoreReadOnly
  and the store refuses writes (`write_refusal` says why; /readyz answers 503 with it).
- While it refuses, queued writes fail at once without touching the disk, and every `PROBE_SECONDS` the
  writer reclaims the WAL and writes one page. Only when both succeed does it take writes again: a
  checkpoint first, so that the space freed by an operator goes to shrinking the WAL, not to growing it.
- A store that opens on a full disk starts refusing writes; reads work. If even the WAL index
  (<database>-shm, 32 KiB) cannot be created, the store keeps it in this process's memory instead
  (SQLite's unix-excl VFS: safe because one process holds the store, actors/_lock.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

from ._bulk import StateImport
from ._records import RecordPrune, ReminderBatchWrite, ReminderRecord, TurnWrite
from ._stats import RuntimeStats
from ._transactions import T, Write, actors_changed, apply_batch, transaction, write_fault
from .exceptions import StoreError, StoreReadOnly

log = logging.getLogger("airdisplay.store")

#: Marks the file as ours (PRAGMA application_id), so a foreign SQLite file is refused at start-up.
APPLICATION_ID = 0x41495244  # "AIRD"
#: 2: actor records (`Record`). 3: actor records kept in time order (`_RECORDS_IN_TIME_ORDER`).
SCHEMA_VERSION = 3
#: Turns per transaction. With synchronous=FULL SQLite takes ~2,900 upserts/s one per transaction, ~133k/s
#: at 1,000 per transaction and ~141k/s at 10,000 here (bench/sqlite_batch.py,
#: docs/benchmarks/results/sqlite_batch.md): larger batches gain little and add latency to their first turn.
MAX_BATCH = 1000
#: Actors a transaction's writes change between its looks for urgent writes (`_commit_some`): one reminder
#: batch (actors/_scheduler.py BATCH_SIZE), or that many turns.
APPLY_SLICE = 250
#: Actor ids per query of a batched state read: well under SQLite's 32,766 bound parameters.
READ_CHUNK = 500

Durability = Literal["full", "normal"]
Q = TypeVar("Q")

#: Actor records' table (schema 3: in time order, `_RECORDS_IN_TIME_ORDER`), `{name}` to fill in.
_RECORDS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    actor_type TEXT NOT NULL,
    actor_id   TEXT NOT NULL,
    at         REAL NOT NULL,
    record_id  TEXT NOT NULL,
    value      BLOB NOT NULL,
    PRIMARY KEY (actor_type, at, actor_id, record_id)
) WITHOUT ROWID;
"""
_RECORDS_INDEX = (
    "CREATE INDEX IF NOT EXISTS records_by_actor ON actor_records (actor_type, actor_id, at, record_id);"
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS actor_state (
    actor_type TEXT NOT NULL,
    actor_id   TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      BLOB NOT NULL,
    PRIMARY KEY (actor_type, actor_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reminders (
    actor_type TEXT NOT NULL,
    actor_id   TEXT NOT NULL,
    name       TEXT NOT NULL,
    due_at     REAL NOT NULL,
    period     REAL,
    data       BLOB NOT NULL,
    PRIMARY KEY (actor_type, actor_id, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reminders_by_due ON reminders (due_at, actor_type, actor_id, name);
{_RECORDS_TABLE.format(name="actor_records")}
{_RECORDS_INDEX}
"""

#: How schema 2 kept actor records (banner by banner, an index by time), what `_RECORDS_IN_TIME_ORDER`
#: rewrites: a script that turns a new file's records table into schema 2's, for the tests and
#: bench/history_rewrite.py.
SCHEMA_2_RECORDS = """
DROP TABLE actor_records;
CREATE TABLE actor_records (
    actor_type TEXT NOT NULL,
    actor_id   TEXT NOT NULL,
    at         REAL NOT NULL,
    record_id  TEXT NOT NULL,
    value      BLOB NOT NULL,
    PRIMARY KEY (actor_type, actor_id, at, record_id)
) WITHOUT ROWID;
CREATE INDEX records_by_time ON actor_records (actor_type, at, actor_id, record_id);
PRAGMA user_version=2;
"""

#: Schema 3 keeps actor records in time order, an index finding an actor's: a page of the fleet's history
#: is then one range of the table (100 entries in a few adjacent pages) where it was a lookup per entry,
#: and new records go at its end. With 10,000,000 history entries a fleet page of 100 took p99 7.1 ms in
#: schema 2 and 4.3 ms in 3, and 42.6 against 5.5 ms with the file out of the OS cache (bench/history.py,
#: docs/benchmarks/results/history.md). A schema 2 file is rewritten once, in one transaction: 12 s for
#: 1,000,000 entries (bench/history_rewrite.py).
_RECORDS_IN_TIME_ORDER = f"""
BEGIN IMMEDIATE;
{_RECORDS_TABLE.format(name="actor_records_in_time_order")}
INSERT INTO actor_records_in_time_order (actor_type, actor_id, at, record_id, value)
    SELECT actor_type, actor_id, at, record_id, value FROM actor_records
    ORDER BY actor_type, at, actor_id, record_id;
DROP TABLE actor_records;
ALTER TABLE actor_records_in_time_order RENAME TO actor_records;
{_RECORDS_INDEX}
PRAGMA user_version=3;
COMMIT;
"""

#: How often the WAL is copied into the database: often enough to keep the WAL small (a second of
#: writes is a few MB), rarely enough to cost nothing measurable.
CHECKPOINT_SECONDS = 1.0
#: While writes are refused, how often the writer tries to take them again (a checkpoint and a one-page
#: write): writes resume within a second of space coming back, and a full disk sees one failed page write
#: a second, not one per request.
PROBE_SECONDS = 1.0
#: The VFS that keeps the WAL index in process memory, used when the disk has no room for <database>-shm.
HEAP_INDEX_VFS = "unix-excl"


class _QueuedRead(NamedTuple):
    """A read waiting for the reader thread, and the future its result goes to."""

    read: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


class _QueuedWrite(NamedTuple):
    """A turn's or a reminder batch's write waiting for the writer thread, and the future for its outcome."""

    write: Write
    future: asyncio.Future[bool]


#: The interpreter's switch interval (seconds) while an urgent read or write is on its way: how long at most
#: the store's threads wait for the GIL after each SQLite step while the event loop runs Python (5 ms
#: otherwise). Set only then: a thread that waits less also takes the GIL from the loop more often, which
#: cost the submit path +8.7% CPU a request when set for good (docs/benchmarks/results/booking_switches.md).
URGENT_SWITCH_INTERVAL = 0.001


class _UrgentInterval:
    """Lowers the switch interval (process-wide) while any store's urgent read or write is pending."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = 0
        self._saved = 0.0

    def hold(self, future: asyncio.Future[Any]) -> None:
        """Keep the interval low until `future` is done."""
        with self._lock:
            if self._pending == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved, URGENT_SWITCH_INTERVAL))
            self._pending += 1
        future.add_done_callback(self._release)

    def _release(self, _: object) -> None:
        with self._lock:
            self._pending -= 1
            if self._pending == 0:
                sys.setswitchinterval(self._saved)


_urgent_interval = _UrgentInterval()

#: Put on the writer's queue after an urgent write, to wake the writer if it waits (skipped where found).
_WAKE: Any = object()


class SqliteStore:
    """State and reminders of all actors in one SQLite database file."""

    def __init__(self, path: Path, *, durability: Durability = "full") -> None:
        self.path = path
        self.durability = durability
        # None on either queue (put by `close`): its thread finishes what it holds and stops.
        self._queue: queue.SimpleQueue[_QueuedWrite | None] = queue.SimpleQueue()
        #: Urgent writes (`write(urgent=True)`): committed ahead of the queue, in a transaction of their own.
        self._urgent: collections.deque[_QueuedWrite] = collections.deque()
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reads: queue.SimpleQueue[_QueuedRead | None] = queue.SimpleQueue()
        #: Urgent reads (`read_actor(urgent=True)`): read ahead of the queue, a `_WAKE` on it for each.
        self._urgent_reads: collections.deque[_QueuedRead] = collections.deque()
        self._activation_reader: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        self._vfs: str | None = None  # HEAP_INDEX_VFS once the disk had no room for the WAL index
        # Set by the writer thread (by `open` before it starts), read anywhere: one reference, no lock.
        self._refusal: str | None = None
        self._next_probe = 0.0
        #: Where the writer thread records each group commit's time and size (set by the host).
        self.stats: RuntimeStats | None = None

    @property
    def queued_writes(self) -> int:
        """Writes waiting for the writer thread (approximate: read without a lock)."""
        return self._queue.qsize()

    @property
    def write_refusal(self) -> str | None:
        """Why the store refuses writes now (disk full, failing file system); None while it takes them."""
        return self._refusal

    # -- lifecycle ---------------------------------------------------------------------------------

    def verify(self) -> None:
        """Check that the database can be opened (creating it if needed), then close it.

        A database that exists passes on a full disk too: the server then starts refusing writes.
        """
        self._open_connections()
        self._close_connections()

    @contextlib.contextmanager
    def bulk_import(self, *, field_indexes: Sequence[tuple[str, str]] = ()) -> Iterator[StateImport]:
        """One transaction for writing many actors' state while no host has the store open (_bulk.py).

        Creates the database if needed, with the same checks as `open`. When the block ends, the indexes
        `search_state` uses for `field_indexes` ((key, field) pairs) are built if missing, after the
        inserts and in their transaction: built on a server's first start instead, an index held a
        10,000,000-banner start-up for 15 s (bench/registered_memory.py). Then it commits; if the block
        raises, nothing of it is kept.
        """
        self.verify()
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield StateImport(conn, self.path)
            for key, field in field_indexes:
                conn.execute(field_index_sql(key, field))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"importing into {self.path} failed: {exc}") from None
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open (or create) the database; raise StoreError with a clear reason if it cannot be used.

        A write fault at start-up (full disk) does not stop it: the store opens refusing writes.
        """
        self._loop = loop
        self._open_connections()
        assert self._writer is not None
        self._refusal = None
        try:
            self._commit(self._writer, _touch)  # the first write shows whether writes can succeed
        except StoreReadOnly:
            pass  # _refuse logged why
        except StoreError:
            self._close_connections()
            raise
        self._thread = threading.Thread(target=self._write_loop, name="airdisplay-store-writer", daemon=True)
        self._thread.start()
        reader = self._connect()
        self._activation_reader = threading.Thread(
            target=self._read_loop, args=(reader,), name="airdisplay-store-reader", daemon=True
        )
        self._activation_reader.start()
        self._stop_checkpoints.clear()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop,
            args=(self._connect(),),
            name="airdisplay-store-checkpoints",
            daemon=True,
        )
        self._checkpointer.start()

    def _open_connections(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create data directory {self.path.parent}: {exc.strerror}") from None
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory, not a database file")
        self._vfs = None
        while True:
            try:
                self._writer = self._connect()
                self._prepare_schema(self._writer)
                self._writer.execute(f"PRAGMA synchronous={self.durability.upper()}")
                # Checkpoints run on their own thread (_checkpoint_loop), never inside a group commit.
                self._writer.execute("PRAGMA wal_autocheckpoint=0")
                self._reader = self._connect()
                return
            except sqlite3.DatabaseError as exc:
                self._close_connections()
                if self._vfs is not None or write_fault(exc) is None:
                    raise StoreError(f"cannot use {self.path} as the AirDisplay database: {exc}") from None
                # No room for the WAL index file: keep the index in memory rather than not start at all.
                log.warning("cannot create the WAL index of %s (%s); keeping it in memory", self.path, exc)
                self._vfs = HEAP_INDEX_VFS

    def _connect(self) -> sqlite3.Connection:
        if self._vfs is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        else:
            uri = f"{self.path.absolute().as_uri()}?vfs={self._vfs}"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def _prepare_schema(self, conn: sqlite3.Connection) -> None:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id != APPLICATION_ID and tables:
            raise sqlite3.DatabaseError("the file is an SQLite database of another program")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise sqlite3.DatabaseError(f"cannot switch the journal to WAL (got {mode})")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than this AirDisplay ({SCHEMA_VERSION})"
            )
        if app_id == APPLICATION_ID and version == SCHEMA_VERSION:
            return  # in place: writing nothing lets a full disk start read-only
        if app_id == APPLICATION_ID and version == 2 and not self._put_records_in_time_order(conn):
            return  # schema 2 works as it is, slower to page by time: rewritten at a start with room
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _put_records_in_time_order(self, conn: sqlite3.Connection) -> bool:
        """Rewrite a schema 2 file's records in time order (`_RECORDS_IN_TIME_ORDER`), all or nothing;
        False if there was no room (the file is left as it was), StoreError for another failure."""
        (count,) = conn.execute("SELECT count(*) FROM actor_records").fetchone()
        log.warning("rewriting %d actor records in time order (schema 2 to 3), once", count)
        started = time.monotonic()
        try:
            conn.executescript(_RECORDS_IN_TIME_ORDER)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            fault = write_fault(exc)
            if fault is None:
                raise
            log.warning("cannot rewrite the actor records (%s): kept as they are until a later start", fault)
            return False
        log.warning("rewrote %d actor records in %.1f s", count, time.monotonic() - started)
        return True

    async def close(self) -> None:
        """Commit what is queued, stop the writer and the reader, and close the file."""
        if self._activation_reader is not None:
            self._reads.put(None)
            await asyncio.to_thread(self._activation_reader.join)
            self._activation_reader = None
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        if self._checkpointer is not None:
            self._stop_checkpoints.set()
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
        self._close_connections()

    def _checkpoint_loop(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL into the database every CHECKPOINT_SECONDS, beside the writer, not in its way.

        SQLite's automatic checkpoint runs inside the commit that crosses 1,000 WAL pages, so that one
        group commit (and every turn waiting on it) also paid for copying and fsyncing the pages: with a
        1,000,000-banner database, expiries became visible p99 287 ms late while their turns ran p99 37 ms
        late (bench/expiries.py). A PASSIVE checkpoint never blocks the writer or readers; on close a
        TRUNCATE checkpoint leaves a short WAL behind.
        """
        try:
            while not self._stop_checkpoints.wait(CHECKPOINT_SECONDS):
                if self._refusal is not None:
                    continue  # the writer's probes checkpoint meanwhile
                # Locked or full: the WAL keeps the data, and the next round tries again.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

    def _close_connections(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                conn.close()
        self._reader = self._writer = None

    # -- reads (event-loop thread) -----------------------------------------------------------------

    @property
    def _r(self) -> sqlite3.Connection:
        if self._reader is None:
            raise StoreError("the store is not open")
        return self._reader

    async def read_actor(self, actor_type: str, actor_id: str, *, urgent: bool = False) -> dict[str, bytes]:
        """All state entries of one actor, read on the store's reader thread: the loop never waits on SQLite.

        A read on the loop thread releases the GIL and then waits to get it back from the writer thread;
        on one core that wait was 11% of the loop's time under load, against 1.4% for the read itself
        (py-spy with and without --gil, bench/submit_vs_bare.py load). An `urgent` read (the activation
        for an urgent reminder, actors/_scheduler.py) goes ahead of the reads queued before it.
        """

        def read(conn: sqlite3.Connection) -> dict[str, bytes]:
            rows = conn.execute(
                "SELECT key, value FROM actor_state WHERE actor_type=? AND actor_id=?", (actor_type, actor_id)
            ).fetchall()
            return {key: bytes(value) for key, value in rows}

        result: dict[str, bytes] = await self._read(read, urgent=urgent)
        return result

    async def read_actors(
        self, actor_type: str, actor_ids: Sequence[str], keys: Sequence[str]
    ) -> dict[str, dict[str, bytes]]:
        """State entries `keys` of many actors of one type, read on the reader thread; no entry, no actor."""

        def read(conn: sqlite3.Connection) -> dict[str, dict[str, bytes]]:
            found: dict[str, dict[str, bytes]] = {}
            key_marks = ",".join("?" * len(keys))
            for start in range(0, len(actor_ids), READ_CHUNK):
                chunk = actor_ids[start : start + READ_CHUNK]
                rows = conn.execute(
                    f"SELECT actor_id, key, value FROM actor_state WHERE actor_type=? "
                    f"AND actor_id IN ({','.join('?' * len(chunk))}) AND key IN ({key_marks})",
                    (actor_type, *chunk, *keys),
                ).fetchall()
                for actor_id, key, value in rows:
                    found.setdefault(actor_id, {})[key] = bytes(value)
            return found

        result: dict[str, dict[str, bytes]] = await self._read(read)
        return result

    async def _read(self, read: Callable[[sqlite3.Connection], Any], *, urgent: bool = False) -> Any:
        if self._activation_reader is None or self._loop is None:
            raise StoreError("the store is not open")
        future: asyncio.Future[Any] = self._loop.create_future()
        if urgent:
            _urgent_interval.hold(future)
            self._urgent_reads.append(_QueuedRead(read, future))
            self._reads.put(_WAKE)
        else:
            self._reads.put(_QueuedRead(read, future))
        return await future

    def _read_loop(self, conn: sqlite3.Connection) -> None:
        assert self._loop is not None
        loop = self._loop
        while True:
            first = self._reads.get()
            if first is None:
                break
            batch: list[_QueuedRead | None] = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._reads.get_nowait())
                except queue.Empty:
                    break
            outcomes: list[tuple[asyncio.Future[Any], object]] = []
            stopping = False
            for item in batch:
                if self._urgent_reads:  # ahead of the rest of the batch, and answered at once
                    loop.call_soon_threadsafe(_settle_reads, self._read_urgent(conn))
                if item is None:
                    stopping = True
                    continue
                if item is _WAKE:
                    continue
                outcomes.append(self._read_one(conn, item))
            loop.call_soon_threadsafe(_settle_reads, outcomes)
            if stopping:
                break
        if self._urgent_reads:
            loop.call_soon_threadsafe(_settle_reads, self._read_urgent(conn))
        conn.close()

    def _read_urgent(self, conn: sqlite3.Connection) -> list[tuple[asyncio.Future[Any], object]]:
        return [self._read_one(conn, item) for item in _drain(self._urgent_reads)]

    def _read_one(self, conn: sqlite3.Connection, item: _QueuedRead) -> tuple[asyncio.Future[Any], object]:
        read, future = item
        try:
            return future, read(conn)
        except Exception as exc:  # a failed read fails its caller, never the thread
            return future, StoreError(f"reading {self.path} failed: {exc}")

    def page_state(self, actor_type: str, key: str, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        """(actor id, value) of state entry `key` for actors of a type, by id, after id `after`."""
        rows = self._r.execute(
            "SELECT actor_id, value FROM actor_state WHERE actor_type=? AND actor_id>? AND key=? "
            "ORDER BY actor_id LIMIT ?",
            (actor_type, after or "", key, limit),
        ).fetchall()
        return [(actor_id, bytes(value)) for actor_id, value in rows]

    def ensure_field_index(self, key: str, field: str) -> None:
        """Index `lower(value.field)` of state entries `key`, for `search_state` (idempotent)."""
        self._r.execute(field_index_sql(key, field))

    def search_state(
        self, actor_type: str, key: str, field: str, prefix: str, after: str | None, limit: int
    ) -> list[tuple[str, bytes]]:
        """Like page_state, for actors whose id or lower-cased `field` starts with `prefix` (lower-case).

        Two index range scans (id, and the field index) merged by id; cost grows with the matches of
        the prefix, not with the number of actors.
        """
        if not (key.isidentifier() and field.isidentifier()):
            raise ValueError("key and field must be identifiers")
        upper = prefix + "\U0010ffff"
        name = f"lower(json_extract(CAST(value AS TEXT), '$.{field}'))"
        by_id = self._r.execute(
            "SELECT actor_id, value FROM actor_state WHERE actor_type=? AND key=? "
            "AND actor_id>=? AND actor_id<? AND actor_id>? ORDER BY actor_id LIMIT ?",
            (actor_type, key, prefix, upper, after or "", limit),
        ).fetchall()
        # The key is inlined so that SQLite can use the partial index (it cannot match a bound parameter).
        by_field = self._r.execute(
            f"SELECT actor_id, value FROM actor_state WHERE actor_type=? AND key='{key}' "
            f"AND {name}>=? AND {name}<? AND actor_id>? ORDER BY actor_id LIMIT ?",
            (actor_type, prefix, upper, after or "", limit),
        ).fetchall()
        merged = dict(sorted({**dict(by_id), **dict(by_field)}.items())[:limit])
        return [(actor_id, bytes(value)) for actor_id, value in merged.items()]

    def page_reminders(self, after: tuple[float, str, str, str] | None, limit: int) -> list[ReminderRecord]:
        """Reminders in due order, strictly after cursor `after` (None: from the start)."""
        sql = "SELECT actor_type, actor_id, name, due_at, period, data FROM reminders"
        params: Sequence[object] = ()
        if after is not None:
            sql += " WHERE (due_at, actor_type, actor_id, name) > (?, ?, ?, ?)"
            params = after
        sql += " ORDER BY due_at, actor_type, actor_id, name LIMIT ?"
        rows = self._r.execute(sql, (*params, limit)).fetchall()
        return [ReminderRecord(t, i, n, d, p, bytes(b)) for t, i, n, d, p, b in rows]

    def ensure_urgent_index(self, names: Iterable[tuple[str, str]]) -> str | None:
        """Index the reminders named `names` ((actor type, name) pairs) by due time, for
        `due_urgent_reminders`; returns the condition that selects them (None for no names).

        A partial index: only those rows are in it, so the other reminders' writes cost nothing more. Its
        first creation reads the reminders once: 0.14 s for 1,000,000, and a look-up of 100 takes 0.5 ms
        (docs/benchmarks/results/booking_switches.md).
        """
        pairs = sorted(set(names))
        if not pairs:
            return None
        condition = " OR ".join(f"(actor_type = {_quoted(t)} AND name = {_quoted(n)})" for t, n in pairs)
        condition = f"({condition})"
        self._r.execute(
            f"CREATE INDEX IF NOT EXISTS {_urgent_index(condition)} ON reminders "
            f"(due_at, actor_type, actor_id, name) WHERE {condition}"
        )
        return condition

    def due_urgent_reminders(self, condition: str, now: float, limit: int) -> list[ReminderRecord]:
        """The earliest reminders that `condition` (from `ensure_urgent_index`) selects and that are due by
        `now`. Through their index by name (INDEXED BY): left to itself, SQLite searched the primary key by
        actor type, which for a fleet of one type is every reminder."""
        rows = self._r.execute(
            "SELECT actor_type, actor_id, name, due_at, period, data "
            f"FROM reminders INDEXED BY {_urgent_index(condition)} WHERE {condition} "
            "AND due_at <= ? ORDER BY due_at, actor_type, actor_id, name LIMIT ?",
            (now, limit),
        ).fetchall()
        return [ReminderRecord(t, i, n, d, p, bytes(b)) for t, i, n, d, p, b in rows]

    # -- writes ------------------------------------------------------------------------------------

    def write(self, turn: TurnWrite, *, urgent: bool = False) -> asyncio.Future[bool]:
        """Queue one turn's changes; the future resolves once they are durable.

        Its result says whether `turn.fired` still matched the stored reminder (True when there is none).
        An `urgent` write (the turn of an urgent reminder, actors/_scheduler.py) does not wait behind the
        writes queued before it: it joins the transaction being applied, if its commit has not begun, else
        the writer commits it next, in a small transaction of its own. Until it is durable the threads
        wait less for the GIL (URGENT_SWITCH_INTERVAL).
        """
        if self._thread is None or self._loop is None:
            raise StoreError("the store is not open")
        future: asyncio.Future[bool] = self._loop.create_future()
        if urgent:
            _urgent_interval.hold(future)
            self._urgent.append(_QueuedWrite(turn, future))
            self._queue.put(_WAKE)
        else:
            self._queue.put(_QueuedWrite(turn, future))
        return future

    def prune_records(self, prune: RecordPrune) -> asyncio.Future[bool]:
        """Queue a prune of old records with the turns' writes; True once done if more may be left."""
        if self._thread is None or self._loop is None:
            raise StoreError("the store is not open")
        future: asyncio.Future[bool] = self._loop.create_future()
        self._queue.put(_QueuedWrite(prune, future))
        return future

    def records_of(
        self, actor_type: str, actor_id: str, before: tuple[float, str] | None, limit: int
    ) -> list[tuple[float, str, bytes]]:
        """(time, id, value) of an actor's records, newest first, strictly before cursor `before`."""
        at, record_id = before if before is not None else (float("inf"), "")
        rows = self._r.execute(
            "SELECT at, record_id, value FROM actor_records WHERE actor_type=? AND actor_id=? "
            "AND (at < ? OR (at = ? AND record_id < ?)) ORDER BY at DESC, record_id DESC LIMIT ?",
            (actor_type, actor_id, at, at, record_id, limit),
        ).fetchall()
        return [(at, record_id, bytes(value)) for at, record_id, value in rows]

    def records_between(
        self,
        actor_type: str,
        since: float,
        until: float,
        after: tuple[float, str, str] | None,
        limit: int,
    ) -> list[tuple[str, float, str, bytes]]:
        """(actor id, time, id, value) of records of a type made in [since, until), oldest first, strictly
        after cursor `after` (time, actor id, record id)."""
        at, actor_id, record_id = after if after is not None else (since, "", "")
        rows = self._r.execute(
            "SELECT actor_id, at, record_id, value FROM actor_records WHERE actor_type=? "
            "AND at >= ? AND at < ? AND (at, actor_id, record_id) > (?, ?, ?) "
            "ORDER BY at, actor_id, record_id LIMIT ?",
            (actor_type, since, until, at, actor_id, record_id, limit),
        ).fetchall()
        return [(actor_id, at, record_id, bytes(value)) for actor_id, at, record_id, value in rows]

    def write_batch(self, batch: ReminderBatchWrite) -> asyncio.Future[bool]:
        """Queue a reminder batch; the future resolves once all of it is durable, or fails for all of it."""
        if self._thread is None or self._loop is None:
            raise StoreError("the store is not open")
        future: asyncio.Future[bool] = self._loop.create_future()
        self._queue.put(_QueuedWrite(batch, future))
        return future

    def _write_loop(self) -> None:
        assert self._writer is not None and self._loop is not None
        conn, loop = self._writer, self._loop
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=self._probe_wait())
            except queue.Empty:
                self._probe(conn)
                continue
            if first is None:
                break
            if self._urgent:
                self._commit_group(conn, loop, _drain(self._urgent))
            if first is _WAKE:
                continue
            items = [first]
            size = actors_changed(first.write)
            while size < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                if nxt is _WAKE:
                    continue
                items.append(nxt)
                size += actors_changed(nxt.write)
            self._commit_group(conn, loop, items)
        if self._urgent:
            self._commit_group(conn, loop, _drain(self._urgent))

    def _commit_group(
        self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop, items: list[_QueuedWrite]
    ) -> None:
        """Commit `items` and settle their futures (on the loop), or fail them: in one transaction, unless
        urgent writes come while it is applied (`_commit_some`)."""
        while items:
            items = self._commit_some(conn, loop, items)

    def _commit_some(
        self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop, items: list[_QueuedWrite]
    ) -> list[_QueuedWrite]:
        """Commit `items` in one transaction, or, if urgent writes come while it is applied, the slices
        of it applied by then (see APPLY_SLICE) with the urgent writes; returns the items left for the next
        transaction. Settles the futures of what was committed, or fails them all and leaves nothing.

        Urgent writes that came while the group was applied join it before its commit, rather than wait
        for the rest of it (a slice of a reminder batch took p99 117 ms to apply on the VM of
        docs/benchmarks/results/booking_switches.md) and then pay a commit of their own. No actor has two
        writes in one transaction: a turn keeps its actor until its write is durable. They go first in the
        lists: settled first, an urgent turn goes on before the loop runs what the rest wakes (a reminder
        batch's events, say). A retry (`_commit`) applies them again, and they settle or fail with it.
        """
        if self._refusal is not None and time.monotonic() >= self._next_probe:
            self._probe(conn)
        if self._refusal is not None:
            loop.call_soon_threadsafe(_fail_all, [f for _, f in items], StoreReadOnly(self._refusal))
            return []
        started = time.perf_counter()
        joined: list[_QueuedWrite] = []
        applied: list[_QueuedWrite] = []

        def apply(conn: sqlite3.Connection) -> list[bool]:
            applied.clear()
            results: list[bool] = []
            for piece in _slices(items):
                results += apply_batch(conn, [write for write, _ in piece])
                applied.extend(piece)
                if self._urgent and len(applied) < len(items):
                    break
            joined.extend(_drain(self._urgent))
            if joined:
                results[:0] = apply_batch(conn, [write for write, _ in joined])
            return results

        try:
            results = self._commit(conn, apply)
        except StoreError as exc:
            loop.call_soon_threadsafe(_fail_all, [f for _, f in joined + items], exc)
            return []
        except Exception as exc:  # every failure fails the batch's turns, never the thread
            error = StoreError(f"writing to {self.path} failed: {exc}")
            loop.call_soon_threadsafe(_fail_all, [f for _, f in joined + items], error)
            return []
        committed = joined + applied
        loop.call_soon_threadsafe(_settle_all, [f for _, f in committed], results)
        if self.stats is not None:
            self.stats.commit_seconds.observe(time.perf_counter() - started)
            self.stats.commit_writes.observe(len(committed))
        return items[len(applied) :]

    def _commit(self, conn: sqlite3.Connection, apply: Callable[[sqlite3.Connection], T]) -> T:
        """Run `apply` in one transaction; on a write fault reclaim the WAL and try once more, then refuse."""
        try:
            return transaction(conn, apply)
        except sqlite3.Error as exc:
            fault = write_fault(exc)
            if fault is None:
                raise StoreError(f"writing to {self.path} failed: {exc}") from None
        if self._reclaim_wal(conn):
            try:
                return transaction(conn, apply)
            except sqlite3.Error as exc:
                fault = write_fault(exc)
                if fault is None:
                    raise StoreError(f"writing to {self.path} failed: {exc}") from None
        self._refuse(fault)
        raise StoreReadOnly(f"writing to {self.path} failed: {fault}")

    def _reclaim_wal(self, conn: sqlite3.Connection) -> bool:
        """Checkpoint the whole WAL into the database and truncate it; True if that worked."""
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error:
            return False
        return bool(busy == 0)

    def _refuse(self, fault: str) -> None:
        if self._refusal is None:
            log.warning("refusing writes to %s: %s; reads still work", self.path, fault)
        self._refusal = f"{fault}: writes are refused until one succeeds again; reads still work"
        self._next_probe = time.monotonic() + PROBE_SECONDS

    def _probe_wait(self) -> float | None:
        if self._refusal is None:
            return None
        return max(0.0, self._next_probe - time.monotonic())

    def _probe(self, conn: sqlite3.Connection) -> None:
        """Take writes again if the WAL can be reclaimed and then a one-page write lands."""
        self._next_probe = time.monotonic() + PROBE_SECONDS
        if not self._reclaim_wal(conn):
            return
        try:
            transaction(conn, _touch)
        except sqlite3.Error as exc:
            if (fault := write_fault(exc)) is not None:
                self._refuse(fault)
            return
        self._refusal = None
        log.info("writes to %s succeed again", self.path)


def _touch(conn: sqlite3.Connection) -> None:
    """The smallest real write: the header page, rewritten with the schema version it holds."""
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def field_index_sql(key: str, field: str) -> str:
    """The statement that creates the index `search_state` uses for `field` of state entries `key`
    (`bulk_import` runs it after its inserts)."""
    if not key.isidentifier() or not field.isidentifier():
        raise ValueError(f"bad key or field name {key!r}, {field!r}")
    return (
        f"CREATE INDEX IF NOT EXISTS state_{key}_{field} ON actor_state "
        f"(actor_type, lower(json_extract(CAST(value AS TEXT), '$.{field}'))) WHERE key = '{key}'"
    )


def _slices(items: list[_QueuedWrite]) -> Iterator[list[_QueuedWrite]]:
    """`items` in order, in slices of whole writes that change APPLY_SLICE actors or more (the last: less)."""
    piece: list[_QueuedWrite] = []
    size = 0
    for item in items:
        piece.append(item)
        size += actors_changed(item.write)
        if size >= APPLY_SLICE:
            yield piece
            piece, size = [], 0
    if piece:
        yield piece


def _drain(items: collections.deque[Q]) -> list[Q]:
    """Everything in `items`, taken out (another thread may still append; what comes after is left)."""
    taken = []
    with contextlib.suppress(IndexError):
        while True:
            taken.append(items.popleft())
    return taken


def _urgent_index(condition: str) -> str:
    """The name of the partial index of the reminders `condition` selects (`ensure_urgent_index`)."""
    return f"reminders_urgent_{hashlib.sha256(condition.encode()).hexdigest()[:12]}"


def _quoted(text: str) -> str:
    """`text` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _settle_reads(outcomes: list[tuple[asyncio.Future[Any], object]]) -> None:
    for future, outcome in outcomes:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _settle_all(futures: list[asyncio.Future[bool]], results: list[bool]) -> None:
    for future, result in zip(futures, results, strict=True):
        if not future.done():
            future.set_result(result)


def _fail_all(futures: list[asyncio.Future[bool]], error: StoreError) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)
