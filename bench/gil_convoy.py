"""How long the store's writer takes to apply a slice of a reminder batch while another thread runs Python.

The store's writer (src/airdisplay/actors/_store.py) is a thread: it gives up the GIL while SQLite works
and must take it back after, and while the event loop runs Python that wait lasts up to the switch interval
(5 ms) each time. This applies what the expiry of a message writes for 250 banners (a slice, APPLY_SLICE):
the fired reminder deleted, the banner's state set, its queue removed, a history record merged, in one
transaction with the writer's own `apply_batch` (of the code on PYTHONPATH), once with the process
otherwise idle and once beside a thread that runs Python without pause (as the loop does in an expiry
wave). Give `--before SRC` to measure another copy of the code too (a `git archive` of a commit, say).

    PYTHONPATH=src uv run python bench/gil_convoy.py [--slices 40 --before /tmp/old/src --json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _report import conditions, machine, median, percentile, table, wait_for_quiet_machine, write_json

SLICE = 250
STATE = b'{"id":"n123ab","message":null,"updated_at":1}' + b" " * 200
RECORD = b'{"ended_at":2,"ended":"expired"}'


def measure(slices: int, busy: bool) -> list[float]:
    """Milliseconds per slice: one transaction of `apply_batch` for SLICE expiries, `slices` times."""
    from airdisplay.actors import SqliteStore
    from airdisplay.actors._records import Record, ReminderBatchWrite, ReminderRecord, TurnWrite
    from airdisplay.actors._transactions import apply_batch, transaction

    with tempfile.TemporaryDirectory(prefix="airdisplay-convoy-") as tmp:
        path = Path(tmp) / "actors.db"
        SqliteStore(path).verify()
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA synchronous=FULL")
        ids = [f"b{i:07d}" for i in range(slices * SLICE)]
        reminders = {
            a: ReminderRecord("banner", a, "switch", 1000.0 + i, None, b"") for i, a in enumerate(ids)
        }
        setup = [
            TurnWrite("banner", a, state_set=[("banner", STATE)], reminders_set=[reminders[a]]) for a in ids
        ]
        for start in range(0, len(setup), 10_000):
            transaction(conn, lambda c, part=setup[start : start + 10_000]: apply_batch(c, part))
        stop = threading.Event()

        def run_python() -> None:
            while not stop.is_set():
                sum(range(1000))

        spinner = threading.Thread(target=run_python, daemon=True)
        if busy:
            spinner.start()
        took = []
        try:
            for n in range(slices):
                part = ids[n * SLICE : (n + 1) * SLICE]
                batch = ReminderBatchWrite(
                    fired=[reminders[a] for a in part],
                    state_set=[("banner", a, "banner", STATE) for a in part],
                    state_removed=[("banner", a, "queue") for a in part],
                    records=[("banner", a, Record("m1", 1.0, RECORD)) for a in part],
                )
                started = time.perf_counter()
                transaction(conn, lambda c, b=batch: apply_batch(c, [b]))
                took.append((time.perf_counter() - started) * 1000)
        finally:
            stop.set()
            if busy:
                spinner.join()
        left = conn.execute("SELECT count(*) FROM reminders").fetchone()[0]
        conn.close()
        assert left == 0, f"{left} reminders left: the slices did not apply"
    return took


def summary(took: list[float]) -> dict[str, float]:
    return {"p50_ms": median(took), "p99_ms": percentile(took, 99), "max_ms": max(took)}


def run_here(slices: int) -> dict[str, dict[str, float]]:
    return {"idle": summary(measure(slices, busy=False)), "busy": summary(measure(slices, busy=True))}


def run_other(src: str, slices: int) -> dict[str, dict[str, float]]:
    """The same measurement in a child process that imports the code from `src`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(Path(__file__).parent)])}
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--slices", str(slices)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, dict[str, float]] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slices", type=int, default=40, help="slices of 250 applied per measurement")
    parser.add_argument("--before", metavar="SRC", help="also measure the code in this src directory")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine first")
    parser.add_argument("--max-wait", type=float, default=600.0, help="longest wait for a quiet machine (s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_here(args.slices)))
        return
    at_start = conditions() if args.no_wait else wait_for_quiet_machine(args.max_wait)
    import airdisplay

    results = {"this code": run_here(args.slices)}
    if args.before:
        results["--before"] = run_other(args.before, args.slices)
    print(f"## A slice of {SLICE} expiries applied in one transaction, idle and beside a busy thread\n")
    here = Path(airdisplay.__file__).parent
    print(f"At the start: {at_start}. {args.slices} slices each; this code: {here}.\n")
    print(
        table(
            ("code", "idle p50 / p99 ms", "beside busy Python p50 / p99 / max ms"),
            [
                (
                    name,
                    f"{r['idle']['p50_ms']:.1f} / {r['idle']['p99_ms']:.1f}",
                    f"{r['busy']['p50_ms']:.1f} / {r['busy']['p99_ms']:.1f} / {r['busy']['max_ms']:.1f}",
                )
                for name, r in results.items()
            ],
        )
    )
    print()
    print(machine())
    write_json(
        args.json,
        "gil_convoy",
        {"config": {"slices": args.slices, "before": args.before}, "ms_per_slice": results},
    )


if __name__ == "__main__":
    main()
