"""Memory and start-up of the real server with a large registered fleet (default 1,000,000 banners).

Registers the fleet the way an operator does, with `airdisplay banners import FLEET.csv --tokens-out
TOKENS.csv` (`--seed runtime`: in-process create_banner calls instead), then starts `airdisplay serve` on
that data directory as a child process and measures: start-up time (process start to /readyz 200) the
first time after the import and again, RSS right after start and after listing pages of the fleet, and the
database's size.

    uv run python bench/registered_memory.py [--banners 1000000 --pages 20]
    uv run python bench/registered_memory.py --banners 10000000 --no-wait --json /tmp/reg10m.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _fleet import (
    SEED_CONCURRENCY,
    ImportRun,
    SeedResult,
    ServerProcess,
    airdisplay_command,
    banner_id,
    free_port,
    http_get,
    import_fleet_file,
    run_async,
    seed_fleet,
)
from _report import (
    ForeignLoad,
    conditions,
    cpu_seconds,
    machine,
    median,
    percentile,
    rss_mb,
    stop_on_signals,
    table,
    wait_for_quiet_machine,
    write_json,
)

PAGE = 500  # the API's largest page

#: Longest wait for /readyz. The first start after an import may build an index over the whole fleet.
READY_TIMEOUT = 900.0


def database_files(data_dir: Path) -> list[tuple[str, str]]:
    rows = []
    for path in sorted(data_dir.glob("airdisplay.db*")):
        rows.append((path.name, f"{path.stat().st_size / 2**20:,.1f} MB"))
    return rows


def serve(data_dir: Path, tmp: Path, name: str) -> ServerProcess:
    port = free_port()
    argv = airdisplay_command() + ["serve", "--port", str(port), "--data-dir", str(data_dir)]
    return ServerProcess(name, argv, port, tmp / f"{name}.log")


def first_start(data_dir: Path, tmp: Path, name: str) -> dict[str, float]:
    """Start-up on `data_dir` (to /readyz 200): seconds, the server's CPU seconds and RSS then; stopped."""
    server = serve(data_dir, tmp, name)
    server.start()
    try:
        seconds = server.wait_ready(timeout=READY_TIMEOUT)
        return {
            "seconds": seconds,
            "cpu_seconds": cpu_seconds(server.pid),
            "rss_mb": rss_mb(server.pid),
            "peak_rss_mb": rss_mb(server.pid, "VmHWM"),
        }
    finally:
        server.stop()


def seed_rows(seed: ImportRun | SeedResult, banners: int) -> list[tuple[str, str]]:
    if isinstance(seed, SeedResult):
        return [
            (
                f"seed (in-process create_banner, {SEED_CONCURRENCY} at once)",
                f"{seed.seconds:.1f} s, {seed.per_second:,.0f} banners/s",
            ),
            (
                "seeding process: peak RSS / runtime.stop()",
                f"{seed.peak_rss_mb:,.0f} MB / {seed.stop_seconds:.1f} s",
            ),
        ]
    tokens = f" --tokens-out ({seed.tokens_bytes / 2**20:,.0f} MB of tokens)" if seed.tokens_bytes else ""
    return [
        (
            f"fleet file: {banners:,} rows `id,name`",
            f"{seed.csv_bytes / 2**20:,.1f} MB, written in {seed.csv_seconds:.1f} s",
        ),
        (
            f"`airdisplay banners import`{tokens}: wall time, banners/s",
            f"{seed.seconds:.1f} s, {seed.per_second:,.0f} banners/s "
            f"(it reports {seed.importer_seconds:.1f} s)",
        ),
        ("import process: peak RSS / CPU time", f"{seed.peak_rss_mb:,.0f} MB / {seed.cpu_seconds:.1f} s"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--banners", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=20, help=f"pages of {PAGE} to list from the start")
    parser.add_argument(
        "--seed",
        choices=("import", "runtime"),
        default="import",
        help="import: `airdisplay banners import` of a CSV file (default); runtime: in-process create_banner",
    )
    parser.add_argument(
        "--no-tokens",
        dest="tokens",
        action="store_false",
        help="import without --tokens-out (no device tokens issued; a fleet needs them to connect)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine first")
    parser.add_argument("--max-wait", type=float, default=600.0, help="longest wait for a quiet machine (s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args()
    stop_on_signals()  # servers are stopped in `finally` on SIGINT/SIGTERM too

    before = conditions() if args.no_wait else wait_for_quiet_machine(args.max_wait)
    others = ForeignLoad()
    tmp = Path(tempfile.mkdtemp(prefix="airdisplay-bench-"))
    data_dir = tmp / "data"
    seed: ImportRun | SeedResult
    if args.seed == "import":
        print(f"importing {args.banners:,} banners into {data_dir} ...", file=sys.stderr)
        seed = import_fleet_file(data_dir, tmp, args.banners, tokens=args.tokens)
    else:
        print(f"seeding {args.banners:,} banners in {data_dir} ...", file=sys.stderr)
        seed = run_async(seed_fleet(data_dir, args.banners))
    files_after_seed = database_files(data_dir)

    empty = first_start(tmp / "empty", tmp, "empty")
    print("first start on the fleet ...", file=sys.stderr)
    first = first_start(data_dir, tmp, "first")
    files_after_first = database_files(data_dir)

    server = serve(data_dir, tmp, "fleet")
    server.start()
    page_ms: list[float] = []
    try:
        ready_after = server.wait_ready(timeout=READY_TIMEOUT)
        rss_ready, hwm_ready = rss_mb(server.pid), rss_mb(server.pid, "VmHWM")
        after: str | None = None
        listed = 0
        for _ in range(args.pages):
            url = f"{server.base_url}/api/v1/banners?limit={PAGE}" + (f"&after={after}" if after else "")
            started = time.perf_counter()
            status, body = http_get(url)
            page_ms.append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise RuntimeError(f"GET {url} answered {status}: {body[:200]!r}")
            page = json.loads(body)
            listed += len(page["items"])
            after = page["next_after"]
            if after is None:
                break
        deep_after = banner_id(max(args.banners - PAGE - 1, 0))
        started = time.perf_counter()
        status, body = http_get(f"{server.base_url}/api/v1/banners?limit={PAGE}&after={deep_after}")
        deep_ms = (time.perf_counter() - started) * 1000
        deep_items = len(json.loads(body)["items"]) if status == 200 else 0
        one_id = banner_id(args.banners // 2)
        status, _ = http_get(f"{server.base_url}/api/v1/banners/{one_id}")
        rss_listed, hwm_listed = rss_mb(server.pid), rss_mb(server.pid, "VmHWM")
    finally:
        server.stop()
    files_after_serve = database_files(data_dir)
    other_cpus = others.cpus()

    print(f"## Registered fleet: {args.banners:,} banners\n")
    print(f"At the start: {before}; other processes used {other_cpus:.2f} CPUs on average meanwhile.\n")
    print(
        table(
            ("measure", "value"),
            [
                *seed_rows(seed, args.banners),
                ("server start-up to /readyz 200, empty data dir", f"{empty['seconds']:.2f} s"),
                (
                    f"server start-up to /readyz 200, {args.banners:,} banners, first start after seeding "
                    "(server CPU; RSS, peak)",
                    f"{first['seconds']:.2f} s ({first['cpu_seconds']:.1f} CPU s; "
                    f"{first['rss_mb']:,.1f} MB, {first['peak_rss_mb']:,.1f} MB)",
                ),
                (
                    f"server start-up to /readyz 200, {args.banners:,} banners, next start",
                    f"{ready_after:.2f} s",
                ),
                ("server RSS right after ready (peak so far)", f"{rss_ready:,.1f} MB ({hwm_ready:,.1f} MB)"),
                (
                    f"server RSS after listing {listed:,} banners ({len(page_ms)} pages), a deep page, a GET",
                    f"{rss_listed:,.1f} MB ({hwm_listed:,.1f} MB)",
                ),
                (
                    f"GET /api/v1/banners?limit={PAGE}: first page / median / p99 of {len(page_ms)}",
                    f"{page_ms[0]:.1f} / {median(page_ms):.1f} / {percentile(page_ms, 99):.1f} ms",
                ),
                (f"deep page (after={deep_after}, {deep_items} items)", f"{deep_ms:.1f} ms"),
                (f"GET /api/v1/banners/{one_id}", str(status)),
            ],
        )
    )
    print()
    stages = (files_after_seed, files_after_first, files_after_serve)
    print(
        table(
            ("database file", "after seeding", "after the first start", "after the server stopped"),
            [
                (name, *(dict(files).get(name, "-") for files in stages))
                for name in sorted({n for files in stages for n, _ in files})
            ],
        )
    )
    print()
    print(machine())
    seeding: dict[str, object] = {
        "seed_method": args.seed,
        "seed_seconds": seed.seconds,
        "seed_per_second": seed.per_second,
        "seed_peak_rss_mb": seed.peak_rss_mb,
    }
    if isinstance(seed, ImportRun):
        seeding |= {
            "import_tokens": args.tokens,
            "import_reported_seconds": seed.importer_seconds,
            "import_cpu_seconds": seed.cpu_seconds,
            "csv_bytes": seed.csv_bytes,
            "csv_write_seconds": seed.csv_seconds,
            "tokens_bytes": seed.tokens_bytes,
        }
    write_json(
        args.json,
        "registered_memory",
        {
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "banners": args.banners,
            **seeding,
            "startup_empty_s": empty["seconds"],
            "startup_first_s": first["seconds"],
            "startup_first_cpu_s": first["cpu_seconds"],
            "rss_first_ready_mb": first["rss_mb"],
            "peak_rss_first_mb": first["peak_rss_mb"],
            "startup_s": ready_after,
            "rss_ready_mb": rss_ready,
            "peak_rss_ready_mb": hwm_ready,
            "rss_listed_mb": rss_listed,
            "peak_rss_listed_mb": hwm_listed,
            "banners_listed": listed,
            "page_ms": page_ms,
            "deep_page_ms": deep_ms,
            "database_files_after_seed": dict(files_after_seed),
            "database_files_after_first_start": dict(files_after_first),
            "database_files_after_serve": dict(files_after_serve),
            "other_cpus": other_cpus,
            "conditions": {"at_start": before},
        },
    )
    if args.keep:
        print(f"\ndata kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
