"""Durable upserts per second into SQLite against rows per transaction: why the store commits in groups.

The embedded runtime's writer thread (src/airdisplay/actors/_store.py) puts many actor turns into one
transaction, at most `MAX_BATCH`. This measures the write it does, with the store's own pragmas (WAL,
`synchronous` FULL or NORMAL) and its `actor_state` table: N distinct banners' states upserted in
transactions of 1, 10, 100, 1,000 and 10,000 rows, on a real file in a temporary directory on the disk the
data directory would use.

    uv run python bench/sqlite_batch.py [--rows 20000 --dir /var/tmp --json results.json]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from _report import conditions, machine, table, wait_for_quiet_machine, write_json

BATCHES = (1, 10, 100, 1_000, 10_000)
MODES = ("FULL", "NORMAL")
#: A banner's state as the store holds it: a few hundred bytes of JSON.
VALUE = b'{"id":"n123ab","message":{"id":"m1","text":"' + b"x" * 64 + b'","shown_at":1,"expires_at":61}}'

SCHEMA = """
CREATE TABLE actor_state (
    actor_type TEXT NOT NULL,
    actor_id   TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      BLOB NOT NULL,
    PRIMARY KEY (actor_type, actor_id, key)
) WITHOUT ROWID;
"""
UPSERT = (
    "INSERT INTO actor_state (actor_type, actor_id, key, value) VALUES ('Banner', ?, 'state', ?) "
    "ON CONFLICT (actor_type, actor_id, key) DO UPDATE SET value = excluded.value"
)


def measure(directory: Path, mode: str, batch: int, rows: int) -> float:
    """Upserts per second: `rows` upserts of distinct banners, `batch` per transaction."""
    path = directory / f"bench-{mode}-{batch}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={mode}")
        conn.executescript(SCHEMA)
        started = time.perf_counter()
        for start in range(0, rows, batch):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(UPSERT, ((f"b{i:08d}", VALUE) for i in range(start, min(rows, start + batch))))
            conn.execute("COMMIT")
        return rows / (time.perf_counter() - started)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20_000, help="upserts per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per cell; the median is shown")
    parser.add_argument("--dir", default=None, help="directory of the database files (default: temp dir)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine first")
    parser.add_argument("--max-wait", type=float, default=600.0, help="longest wait for a quiet machine (s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args()
    before = conditions() if args.no_wait else wait_for_quiet_machine(args.max_wait)
    results: dict[str, dict[str, float]] = {mode: {} for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="airdisplay-sqlite-", dir=args.dir) as tmp:
        for mode in MODES:
            for batch in BATCHES:
                # One commit per row with FULL takes an fsync each: fewer rows keep that cell under a minute.
                rows = min(args.rows, 5_000) if batch == 1 else args.rows
                runs = sorted(measure(Path(tmp), mode, batch, rows) for _ in range(args.repeats))
                results[mode][str(batch)] = runs[len(runs) // 2]
        filesystem = os.statvfs(tmp)
    print(f"## SQLite upserts per second against rows per transaction ({args.rows:,} rows, WAL)\n")
    print(f"At the start: {before}. Median of {args.repeats} runs per cell.\n")
    print(
        table(
            ("rows per transaction", *(f"synchronous={mode} rows/s" for mode in MODES)),
            [(f"{batch:,}", *(f"{results[mode][str(batch)]:,.0f}" for mode in MODES)) for batch in BATCHES],
        )
    )
    print()
    where = f"{args.dir or tempfile.gettempdir()} ({filesystem.f_bsize} B blocks)"
    print(machine([("database directory", where)]))
    write_json(
        args.json,
        "sqlite_batch",
        {
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "rows_per_second": results,
            "conditions": {"at_start": before},
        },
    )


if __name__ == "__main__":
    main()
