"""The one-time rewrite of a schema 2 database's history in time order (schema 3): how long a start takes.

Makes a schema 2 database (actor records kept banner by banner, an index by time) holding `--rows` history
entries of `--banners` banners (bench/history.py's entries), then opens it as the service does at start
(`SqliteStore.verify`), which rewrites them in time order in one transaction. Prints the seconds that took
and the largest the WAL file grew meanwhile (the extra disk the rewrite needs, beside the file).

    uv run python bench/history_rewrite.py [--rows 1000000 --banners 10000 --json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

from _report import machine, stop_on_signals, table, write_json
from airdisplay.actors import SqliteStore
from airdisplay.actors._store import SCHEMA_2_RECORDS
from history import seed


def largest_while(path: Path, done: threading.Event) -> list[int]:
    """Sample the size of `path` every 0.2 s until `done`; the result's one element is the largest."""
    largest = [0]

    def watch() -> None:
        while not done.wait(0.2):
            with contextlib.suppress(OSError):
                largest[0] = max(largest[0], path.stat().st_size)

    threading.Thread(target=watch, daemon=True).start()
    return largest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--banners", type=int, default=10_000)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    stop_on_signals()
    work = Path(tempfile.mkdtemp(prefix="airdisplay-rewrite-"))
    try:
        path = work / "airdisplay.db"
        SqliteStore(path).verify()
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.executescript(SCHEMA_2_RECORDS)
        print(f"seeding {args.rows:,} entries in a schema 2 file ...", file=sys.stderr)
        seed(work, args.rows, args.banners, time.time())
        size_mb = path.stat().st_size / 1e6
        done = threading.Event()
        wal = largest_while(path.with_name("airdisplay.db-wal"), done)
        started = time.perf_counter()
        SqliteStore(path).verify()
        took = time.perf_counter() - started
        done.set()
        with contextlib.closing(sqlite3.connect(path)) as conn:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            (count,) = conn.execute("SELECT count(*) FROM actor_records").fetchone()
        assert version == 3 and count == args.rows, (version, count)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(
        table(
            ("entries", "file MB", "rewrite s", "entries/s", "largest WAL MB"),
            [
                (
                    f"{args.rows:,}",
                    f"{size_mb:,.0f}",
                    f"{took:.1f}",
                    f"{args.rows / took:,.0f}",
                    f"{wal[0] / 1e6:,.0f}",
                )
            ],
        )
    )
    print()
    print(machine())
    write_json(
        args.json,
        "history_rewrite",
        {"rows": args.rows, "file_mb": size_mb, "seconds": took, "largest_wal_mb": wal[0] / 1e6},
    )


if __name__ == "__main__":
    main()
