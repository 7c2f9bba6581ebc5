"""History at size: paging a banner's history and the fleet's with 10,000,000 entries, and pruning 1,000,000.

Registers `--banners` banners, each showing a message (its entry is written when it ends, so a banner's
newest page reads the banner's actor for it too), and seeds `--rows` history entries of theirs straight
into the data directory's `actor_records` table (spread evenly over the last 100 days, so 10% are older
than the 90-day retention), then runs `airdisplay serve` on it, pinned to CPU 0, with this client on CPU 1:
1. with `--history-days 0` (no pruning): `--requests` sequential requests of one banner's newest page
   (`GET /api/v1/banners/{id}/history`, random banners), the same number of second pages (with the first
   page's cursor), and of the fleet's history from a random time (`GET /api/v1/history?since=...`);
   latency p50/p99 as the client sees it; then again after a restart with the database dropped from the
   OS cache ("file not cached": each request reads from the disk what earlier ones did not);
2. restarted with `--history-days 90`: its first pruning round deletes the entries older than 90 days, a
   thousand at a time; how long that took (from the server's log) and the longest event-loop stall
   meanwhile (from its /metrics), with a submit every 50 ms to a banner running throughout.

    uv run python bench/history.py [--rows 10000000 --banners 100000 --requests 2000 --json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import time
import timeit
from pathlib import Path

import httpx

from _fleet import (
    NO_SUBMIT_LIMIT,
    SEED_CONCURRENCY,
    ServerProcess,
    airdisplay_command,
    banner_id,
    free_port,
    pinned,
    run_async,
    seed_fleet,
)
from _report import machine, percentile, stop_on_signals, table, write_json
from airdisplay import domain
from airdisplay.domain import BannerRules, HistoryEntry
from airdisplay.runtimes import EmbeddedRuntime
from devices import LoopFigures

DAY = 86400.0
SPAN_DAYS = 100
RETENTION_DAYS = 90
#: Entries per seeding transaction.
SEED_BATCH = 500_000


async def make_banners(data_dir: Path, banners: int) -> None:
    """The banners, each showing a message for an hour, and the one submitted to while pruning."""
    await seed_fleet(data_dir, banners, progress=False)
    runtime = EmbeddedRuntime(data_dir, BannerRules(display_seconds=3600))
    await runtime.start()
    await runtime.create_banner("live", "The banner submitted to while pruning")
    numbers = iter(range(banners))

    async def worker() -> None:
        for number in numbers:
            await runtime.submit_message(banner_id(number), "showing now", by="client:0123456789abcdef")

    await asyncio.gather(*(worker() for _ in range(SEED_CONCURRENCY)))
    await runtime.stop()


def entry(b: int, j: int, at: float) -> tuple[str, bytes]:
    """Banner `b`'s entry `j`, shown at `at`: its record id and its value as stored."""
    record_id = f"{b:07d}{j:06d}".ljust(32, "0")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    value = {
        "message_id": record_id,
        "text": f"Message {j} on banner {b}",
        "by": "client:0123456789abcdef",
        "requested_at": stamp,
        "shown_at": stamp,
        "ended_at": stamp,
        "ended": "expired",
    }
    return record_id, json.dumps(value, separators=(",", ":")).encode()


def parse_cost(number: int = 200, repeat: int = 10) -> dict[str, float]:
    """Milliseconds to read a page of 100 stored entries (best of `repeat` rounds of `number`), one parse
    and copy per entry (the code before 4a5c089) and in one parse (`stored_entries`), where it exists."""
    page = [(banner_id(b), entry(b, 0, time.time())[1]) for b in range(100)]

    def each() -> list[HistoryEntry]:
        return [HistoryEntry.model_validate_json(v).model_copy(update={"banner_id": b}) for b, v in page]

    ways = {"one parse and copy per entry": each}
    joined = getattr(domain, "stored_entries", None)
    if joined is not None:
        assert joined(page) == each()
        ways["one parse for the page"] = lambda: joined(page)
    return {
        name: min(timeit.repeat(way, number=number, repeat=repeat)) / number * 1e3
        for name, way in ways.items()
    }


def seed(data_dir: Path, rows: int, banners: int, now: float) -> float:
    """Insert `rows` entries in the table's key order, the fastest way into a WITHOUT ROWID table: time
    order (the order a running service adds them in), or banner by banner in a schema 2 file (to compare
    with the code before schema 3); seconds taken."""
    started = time.perf_counter()
    conn = sqlite3.connect(data_dir / "airdisplay.db")
    conn.execute("PRAGMA synchronous=OFF")
    key = [
        n for (n,) in conn.execute("SELECT name FROM pragma_index_info('sqlite_autoindex_actor_records_1')")
    ]
    per_banner = rows // banners
    step = SPAN_DAYS * DAY / per_banner
    # Banner b's entry j shows at first + offset[b] + j * step, with offset[b] < step: in time order
    # round by round, each round in the order of the offsets.
    offsets = sorted((random.random() * step, b) for b in range(banners))
    first = now - SPAN_DAYS * DAY
    if key[1] == "at":
        order = ((b, j, first + offset + j * step) for j in range(per_banner) for offset, b in offsets)
    else:
        order = (
            (b, j, first + o + j * step)
            for o, b in sorted(offsets, key=lambda o: o[1])
            for j in range(per_banner)
        )
    batch = []
    for done, (b, j, at) in enumerate(order, 1):
        record_id, value = entry(b, j, at)
        batch.append(("banner", banner_id(b), at, record_id, value))
        if len(batch) == SEED_BATCH or done == per_banner * banners:
            with conn:
                conn.executemany(
                    "INSERT INTO actor_records (actor_type, actor_id, at, record_id, value) "
                    "VALUES (?, ?, ?, ?, ?)",
                    batch,
                )
            batch = []
            print(f"  seeded {done:,}/{rows:,}", file=sys.stderr)
    conn.close()
    return time.perf_counter() - started


def evict(data_dir: Path) -> None:
    """Drop the database's pages from the OS cache (written out first), as after a reboot or once other
    files pushed them out: the requests then read what they need from the disk."""
    for path in data_dir.glob("airdisplay.db*"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def start_server(data_dir: Path, history_days: float, log: Path) -> ServerProcess:
    port = free_port()
    argv = [*airdisplay_command(), "serve", "--port", str(port), "--data-dir", str(data_dir)]
    argv += ["--history-days", f"{history_days:g}", *NO_SUBMIT_LIMIT]
    server = ServerProcess("airdisplay", pinned(0, argv), port, log)
    server.start()
    server.wait_ready(timeout=600)
    return server


def timed(client: httpx.Client, path: str, params: dict[str, object]) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    response = client.get(path, params=params)
    took = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.text
    return took, response.json()


def paging(
    server: ServerProcess, banners: int, requests: int, now: float, cold: str
) -> dict[str, list[float]]:
    kinds = ("banner, newest page", "banner, next page", "fleet, a page")
    times: dict[str, list[float]] = {kind + cold: [] for kind in kinds}
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for _ in range(requests):
            path = f"/api/v1/banners/{banner_id(random.randrange(banners))}/history"
            took, page = timed(client, path, {"limit": 10})
            times[kinds[0] + cold].append(took)
            took, _ = timed(client, path, {"limit": 10, "before": page["next"]})
            times[kinds[1] + cold].append(took)
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - random.random() * SPAN_DAYS * DAY))
            took, _ = timed(client, "/api/v1/history", {"since": since, "limit": 100})
            times[kinds[2] + cold].append(took)
    return times


def prune(data_dir: Path, log: Path) -> dict[str, object]:
    server = start_server(data_dir, RETENTION_DAYS, log)
    try:
        before = LoopFigures(server)
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                client.delete("/api/v1/banners/live/message")
                client.post("/api/v1/banners/live/message", json={"text": "still here"})
                text = log.read_text(errors="replace")
                found = re.search(r"pruned (\d+) batches of entries older than \S+ days in ([\d.]+) s", text)
                if found:
                    return {
                        "batches": int(found.group(1)),
                        "seconds": float(found.group(2)),
                        "stall": LoopFigures(server).longest_since(before),
                    }
                time.sleep(0.05)
        raise SystemExit("no pruning round was logged within 15 minutes")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--banners", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    stop_on_signals()
    work = Path(tempfile.mkdtemp(prefix="airdisplay-history-"))
    try:
        data_dir = work / "data"
        data_dir.mkdir()
        now = time.time()
        print(f"registering {args.banners:,} banners, each showing a message ...", file=sys.stderr)
        run_async(make_banners(data_dir, args.banners))
        print(f"seeding {args.rows:,} history entries ...", file=sys.stderr)
        seeded_in = seed(data_dir, args.rows, args.banners, now)
        size_mb = (data_dir / "airdisplay.db").stat().st_size / 1e6
        times: dict[str, list[float]] = {}
        for cold in ("", ", file not cached"):
            if cold:
                evict(data_dir)
            server = start_server(data_dir, 0, work / "serve.log")
            try:
                times |= paging(server, args.banners, args.requests, now, cold)
            finally:
                server.stop()
        pruned = prune(data_dir, work / "prune.log")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        (name, f"{len(values):,}", f"{percentile(values, 50):.2f}", f"{percentile(values, 99):.2f}")
        for name, values in times.items()
    ]
    sized = f"{size_mb:,.0f} MB, seeded in {seeded_in:.0f} s"
    print(f"\n{args.rows:,} history entries of {args.banners:,} banners ({sized})\n")
    print(table(("request", "requests", "p50 ms", "p99 ms"), rows))
    prune_rows = [(f"{args.rows // 10:,}", pruned["batches"], pruned["seconds"], pruned["stall"])]
    parsing = parse_cost()
    print()
    print(table(("reading 100 stored entries", "ms"), [(way, f"{ms:.3f}") for way, ms in parsing.items()]))
    print()
    print(table(("entries older than 90 days", "batches", "seconds", "longest loop stall ms"), prune_rows))
    print()
    print(machine())
    write_json(
        args.json,
        "history",
        {
            "rows": args.rows,
            "banners": args.banners,
            "paging": {
                name: {"p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99)} for name, v in times.items()
            },
            "prune": pruned,
            "parse_ms": parsing,
        },
    )


if __name__ == "__main__":
    main()
