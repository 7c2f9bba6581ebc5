"""AirDisplay against the two common ways to build "show this message unless one is showing; clear it after
the duration": PostgreSQL row locks with an expiry sweeper, and a Redis lock (SET NX PXAT).

Every system gets CPU 0 (its app server and its database server), wrk with bench/alternatives.lua gets
CPU 1. Two workloads: uniform (each request to the next of many banners: nearly all 201s) and hot-banner
(64 connections on 10 banners: nearly all 409s, a new winner each display slot). Each 201's body gives the
banner, shown_at and expires_at: per banner, an accepted message whose shown_at is before the previous
accepted one's expires_at is an overwrite. Runs alternate between the systems; medians are reported.

    uv run python bench/alternatives.py [--runs 3 --seconds 10 --banners 100000 --display-seconds 2]
"""

from __future__ import annotations

import argparse
import collections
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from _databases import (
    ensure_tools,
    process_tree,
    seed_postgres,
    seed_redis,
    start_postgres,
    start_redis,
    versions,
)
from _fleet import (
    NO_SUBMIT_LIMIT,
    ServerProcess,
    airdisplay_command,
    free_port,
    pinned,
    run_async,
    seed_fleet,
)
from _report import (
    ForeignLoad,
    conditions,
    cpu_seconds,
    machine,
    median,
    stop_on_signals,
    table,
    wait_for_quiet_machine,
    write_json,
)
from airdisplay.domain import BannerRules
from submit_vs_bare import WrkRun, parse_wrk

BENCH = Path(__file__).resolve().parent
LUA = BENCH / "alternatives.lua"
APPS = BENCH / "alternatives"
SERVER_CPU, LOAD_CPU = 0, 1
#: A run during which other processes used more CPU than this (on average) is run again.
DISTURBED_CPUS = 0.15
#: The hot-banner target of issue 6: AirDisplay at least this many times the better lock baseline.
HOT_TARGET = 2.0
#: Options that turn off a per-client submit rate limit, if this build of `airdisplay serve` has one.


@dataclass
class System:
    """One system under test: an HTTP app and, for the baselines, its database server."""

    name: str
    app: ServerProcess
    database: ServerProcess | None = None
    offset: int = 0  # where in the uniform banners its next run starts

    def pids(self) -> list[int]:
        servers = [self.app] + ([self.database] if self.database else [])
        return [pid for server in servers for pid in process_tree(server.pid)]


@dataclass
class Run:
    system: str
    workload: str
    run: str
    wrk: WrkRun
    statuses: dict[int, int]
    accepted: list[tuple[str, str, str, int]] = field(repr=False)
    wrk_cpu: float  # CPUs the load generator used: well under 1 means it was not the bottleneck
    system_cpu: float  # CPUs the system's processes used (its share of CPU 0 is at most 1)
    other_cpus: float = 0.0
    attempts: int = 1

    @property
    def per_second(self) -> float:
        return self.wrk.per_second

    @property
    def accepted_per_second(self) -> float:
        return len(self.accepted) / self.wrk.seconds

    @property
    def conflicts(self) -> int:
        return self.statuses.get(409, 0)

    @property
    def other_non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if status not in (201, 409))


def rate_limit_off() -> list[str]:
    """The options that turn off the per-client submit limit of `airdisplay serve`."""
    return list(NO_SUBMIT_LIMIT)


def load(
    system: System, workload: str, args: argparse.Namespace, seconds: float, label: str, tmp: Path
) -> Run:
    """One wrk run against one system; the 201s it saw, read back from the Lua script's file."""
    if workload == "uniform":
        first, span, offset = 0, args.banners, system.offset
    else:
        first, span, offset = args.banners, args.hot_banners, 0
    out_file = tmp / f"wrk-{len(list(tmp.glob('wrk-*')))}.txt"
    argv = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds:g}s", "--latency"]
    argv += ["--timeout", "10s", "-s", str(LUA), system.app.base_url, "--"]
    argv += [str(first), str(span), str(offset), str(args.threads), str(out_file)]
    pids = system.pids()
    system_cpu0 = sum(cpu_seconds(pid) for pid in pids)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        pinned(LOAD_CPU, argv), check=True, capture_output=True, text=True, timeout=seconds + 60
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    system_cpu = sum(cpu_seconds(pid) for pid in pids) - system_cpu0
    result = parse_wrk(system.name, label, out)
    statuses: dict[int, int] = collections.Counter()
    accepted = []
    for line in out_file.read_text().splitlines():
        kind, *fields = line.split()
        if kind == "status":
            statuses[int(fields[0])] += int(fields[1])
        else:
            banner, shown, expires, version = fields
            accepted.append((banner, shown, expires, int(version) if version.isdigit() else -1))
    out_file.unlink()
    if workload == "uniform":
        system.offset = (system.offset + result.ids_used) % args.banners
    wrk_cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / result.seconds
    return Run(
        system.name, workload, label, result, dict(statuses), accepted, wrk_cpu, system_cpu / result.seconds
    )


def measured(
    system: System, workload: str, args: argparse.Namespace, seconds: float, label: str, tmp: Path
) -> Run:
    """A run on a quiet machine; run again (up to --retries times) if other processes took CPU."""
    for attempt in range(1, args.retries + 2):
        if not args.no_wait:
            wait_for_quiet_machine(args.max_wait)
        others = ForeignLoad(system.pids())
        result = load(system, workload, args, seconds, label, tmp)
        result.other_cpus, result.attempts = others.cpus(), attempt
        # The messages of this run expire during the next D seconds, on CPU 0: let that work finish here
        # instead of in the next system's run (the sweeper wakes every 0.1 s; 0.5 s is a margin).
        time.sleep(args.display_seconds + 0.5)
        if result.other_cpus < DISTURBED_CPUS or attempt > args.retries:
            return result
        print(
            f"  {system.name} {workload} {label}: others used {result.other_cpus:.2f} CPUs; again",
            file=sys.stderr,
        )
    raise AssertionError("unreachable")


def overwrites(runs: list[Run]) -> tuple[int, int]:
    """(overwrites, unreadable 201 bodies): per banner, accepted messages by shown_at must not overlap."""
    by_banner: dict[str, list[tuple[datetime, datetime]]] = collections.defaultdict(list)
    unreadable = 0
    for run in runs:
        for banner, shown, expires, _ in run.accepted:
            try:
                by_banner[banner].append((datetime.fromisoformat(shown), datetime.fromisoformat(expires)))
            except ValueError:
                unreadable += 1
    count = 0
    for slots in by_banner.values():
        slots.sort()
        count += sum(1 for prev, cur in zip(slots, slots[1:], strict=False) if cur[0] < prev[1])
    return count, unreadable


def start_systems(args: argparse.Namespace, tmp: Path, systems: list[System]) -> list[str]:
    """Seed and start AirDisplay, PostgreSQL + pg_app, Redis + redis_app (per --redis-fsync), each added to
    `systems` as soon as it has a process to stop; the options that turned off AirDisplay's rate limit."""
    total = args.banners + args.hot_banners
    print(f"seeding {total:,} AirDisplay banners in-process ...", file=sys.stderr)
    air_data = tmp / "airdisplay"
    run_async(
        seed_fleet(air_data, total, rules=BannerRules(display_seconds=args.display_seconds), progress=False)
    )
    no_limit = rate_limit_off()
    port = free_port()
    air_argv = airdisplay_command() + ["serve", "--port", str(port), "--data-dir", str(air_data)]
    air_argv += ["--message-seconds", f"{args.display_seconds:g}", *no_limit]
    air = ServerProcess("AirDisplay", pinned(SERVER_CPU, air_argv), port, tmp / "air.log")
    systems.append(System("AirDisplay", air))

    def app(name: str, module: str, env: dict[str, str]) -> ServerProcess:
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(APPS),
            f"{module}:app",
            "--host",
            "127.0.0.1",
        ]
        argv += ["--port", str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log"]
        argv += ["--workers", "1", "--log-level", "warning"]
        env = {**env, "BENCH_DISPLAY_SECONDS": f"{args.display_seconds:g}"}
        return ServerProcess(name, pinned(SERVER_CPU, argv), port, tmp / f"{module}-{port}.log", env)

    pg, dsn = start_postgres(tmp, args.db_cpu)
    name = "PostgreSQL row locks"
    systems.append(
        System(name, app(name, "pg_app", {"BENCH_PG_DSN": dsn, "BENCH_PG_POOL": str(args.pg_pool)}), pg)
    )
    for fsync in args.redis_fsync.split(","):
        server, url = start_redis(tmp, args.db_cpu, fsync)
        name = f"Redis lock (appendfsync {fsync})"
        systems.append(System(name, app(name, "redis_app", {"BENCH_REDIS_URL": url}), server))
        seed_redis(url, total)
    for system in systems:
        system.app.start()
        system.app.wait_ready()
    run_async(seed_postgres(dsn, total))
    return no_limit


def summarize(systems: list[System], runs: list[Run], workloads: list[str]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for workload in workloads:
        for system in systems:
            mine = [r for r in runs if r.system == system.name and r.workload == workload]
            timed = [r for r in mine if r.run != "warm-up"]
            found, unreadable = overwrites(mine)
            rows.append(
                {
                    "system": system.name,
                    "workload": workload,
                    "per_second": median([r.per_second for r in timed]),
                    "accepted_per_second": median([r.accepted_per_second for r in timed]),
                    "p50_ms": median([r.wrk.p50_ms for r in timed]),
                    "p99_ms": median([r.wrk.p99_ms for r in timed]),
                    "accepted": sum(len(r.accepted) for r in mine),
                    "conflicts": sum(r.conflicts for r in mine),
                    "other_non_2xx": sum(r.other_non_2xx for r in mine),
                    "socket_errors": sum(r.wrk.socket_errors for r in mine),
                    "overwrites": found,
                    "unreadable_201s": unreadable,
                    "wrk_cpu": median([r.wrk_cpu for r in timed]),
                    "system_cpu": median([r.system_cpu for r in timed]),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--banners", type=int, default=100_000, help="banners of the uniform workload")
    parser.add_argument("--hot-banners", type=int, default=10, help="banners of the hot-banner workload")
    parser.add_argument("--display-seconds", type=float, default=2.0, help="how long a message shows")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds of warm-up per system and workload"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workloads", default="uniform,hot", help="comma-separated: uniform, hot")
    parser.add_argument(
        "--redis-fsync",
        default="always,everysec",
        help="appendfsync of each Redis system: always (equal durability), everysec (fsync once a second)",
    )
    parser.add_argument("--pg-pool", type=int, default=16, help="asyncpg connections of the PostgreSQL app")
    parser.add_argument("--db-cpu", type=int, default=SERVER_CPU, help="CPU of the database servers")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine first")
    parser.add_argument("--max-wait", type=float, default=600.0, help="longest wait for a quiet machine (s)")
    parser.add_argument("--retries", type=int, default=2, help="re-runs of a run that others disturbed")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args()
    workloads = [w for w in args.workloads.split(",") if w]
    if any(w not in ("uniform", "hot") for w in workloads):
        sys.exit("--workloads takes uniform and/or hot")
    ensure_tools()
    stop_on_signals()

    at_start = conditions() if args.no_wait else wait_for_quiet_machine(args.max_wait)
    tmp = Path(tempfile.mkdtemp(prefix="airdisplay-bench-alt-"))
    systems: list[System] = []
    runs: list[Run] = []
    try:
        no_limit = start_systems(args, tmp, systems)
        for workload in workloads:
            for system in systems:
                print(f"warm-up {system.name} {workload} {args.warmup:g} s ...", file=sys.stderr)
                runs.append(measured(system, workload, args, args.warmup, "warm-up", tmp))
            for i in range(1, args.runs + 1):
                for system in systems:
                    run = measured(system, workload, args, args.seconds, str(i), tmp)
                    print(
                        f"{workload} run {i} {system.name}: {run.per_second:,.0f} req/s, "
                        f"{run.accepted_per_second:,.0f} accepted/s",
                        file=sys.stderr,
                    )
                    runs.append(run)
    except BaseException:
        print(f"stopped early; logs left in {tmp}", file=sys.stderr)
        raise
    finally:
        for system in reversed(systems):
            system.app.stop()
            if system.database:
                system.database.stop()
    after = conditions()
    rows = summarize(systems, runs, workloads)
    report(args, systems, runs, rows, workloads, no_limit, at_start, after)
    if args.keep:
        print(f"\ndata kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def hot_ratio(rows: list[dict[str, object]]) -> tuple[float, str] | None:
    """AirDisplay's hot-banner req/s over the better baseline at equal durability (fsync per commit)."""
    hot = {r["system"]: float(r["per_second"]) for r in rows if r["workload"] == "hot"}  # type: ignore[arg-type]
    baselines = {s: v for s, v in hot.items() if s != "AirDisplay" and "everysec" not in s}
    if "AirDisplay" not in hot or not baselines:
        return None
    best = max(baselines, key=baselines.__getitem__)
    return hot["AirDisplay"] / max(baselines[best], 1e-9), best


def report(
    args: argparse.Namespace,
    systems: list[System],
    runs: list[Run],
    rows: list[dict[str, object]],
    workloads: list[str],
    no_limit: list[str],
    at_start: str,
    after: str,
) -> None:
    limit = f"off ({' '.join(no_limit)})" if no_limit else "none in this build"
    print("## AirDisplay vs PostgreSQL row locks vs a Redis lock\n")
    print(
        f'POST /api/v1/banners/{{id}}/message {{"text":"hello"}}, message shows {args.display_seconds:g} s; '
        f"wrk -t{args.threads} -c{args.connections} on CPU {LOAD_CPU}, {args.runs} x {args.seconds:g} s per "
        f"system and workload after {args.warmup:g} s warm-up, alternating; each system (app and database) "
        f"on CPU {SERVER_CPU} (databases on CPU {args.db_cpu}); medians. Uniform: {args.banners:,} banners "
        f"in turn; hot-banner: {args.connections} connections on {args.hot_banners} banners. "
        f"AirDisplay's submit rate limit: {limit}.\n"
    )
    for workload in workloads:
        print(f"### {'Uniform' if workload == 'uniform' else 'Hot-banner'} workload\n")
        print(
            table(
                ("system", "req/s", "accepted/s", "p50 ms", "p99 ms", "201s", "409s", "other non-2xx")
                + ("socket errors", "overwrites", "wrk CPU", "system CPU"),
                [
                    (
                        r["system"],
                        f"{r['per_second']:,.0f}",
                        f"{r['accepted_per_second']:,.1f}",
                        f"{r['p50_ms']:.1f}",
                        f"{r['p99_ms']:.1f}",
                        f"{r['accepted']:,}",
                        f"{r['conflicts']:,}",
                        f"{r['other_non_2xx']:,}",
                        f"{r['socket_errors']:,}",
                        f"{r['overwrites']:,}",
                        f"{r['wrk_cpu']:.2f}",
                        f"{r['system_cpu']:.2f}",
                    )
                    for r in rows
                    if r["workload"] == workload
                ],
            )
        )
        print()
    ratio = hot_ratio(rows)
    if ratio is not None:
        zero = all(r["overwrites"] == 0 for r in rows if r["system"] == "AirDisplay")
        met = ratio[0] >= HOT_TARGET and zero
        print(
            f"Hot-banner: AirDisplay / {ratio[1]} (the better baseline at equal durability) = "
            f"**{ratio[0]:.2f}x**; target >= {HOT_TARGET:g}x with zero overwrites: "
            f"**{'met' if met else 'not met'}**.\n"
        )
    print(
        "201s, 409s, other non-2xx, socket errors and overwrites count all runs with the warm-up; overwrites "
        "are checked per banner over all of a system's 201s in a workload. wrk CPU: the load generator's CPU "
        "(under 1: not the bottleneck); system CPU: the app's and its database's.\n"
    )
    print(
        table(
            ("system", "workload", "run", "req/s", "accepted/s", "p50 ms", "p99 ms", "409s", "wrk CPU")
            + ("system CPU", "other CPUs", "attempt"),
            [
                (
                    r.system,
                    r.workload,
                    r.run,
                    f"{r.per_second:,.0f}",
                    f"{r.accepted_per_second:,.1f}",
                    f"{r.wrk.p50_ms:.1f}",
                    f"{r.wrk.p99_ms:.1f}",
                    f"{r.conflicts:,}",
                    f"{r.wrk_cpu:.2f}",
                    f"{r.system_cpu:.2f}",
                    f"{r.other_cpus:.2f}",
                    str(r.attempts),
                )
                for r in runs
            ],
        )
    )
    print()
    print(table(("conditions", ""), [("at the start", at_start), ("after the runs", after)]))
    print()
    extra = list(versions().items()) + [("redis (Python client)", _redis_client())]
    print(machine(extra))
    write_json(
        args.json,
        "alternatives",
        {
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "rate_limit_off": no_limit,
            "summary": rows,
            "hot_ratio": ratio[0] if ratio else None,
            "hot_baseline": ratio[1] if ratio else None,
            "runs": [
                {**asdict(r.wrk), **{k: v for k, v in asdict(r).items() if k not in ("wrk", "accepted")}}
                | {"workload": r.workload, "accepted": len(r.accepted)}
                for r in runs
            ],
            "conditions": {"at_start": at_start, "after": after},
        },
        extra,
    )


def _redis_client() -> str:
    import redis

    try:
        import hiredis  # noqa: F401
    except ImportError:
        return f"redis-py {redis.__version__}, pure-Python parser (no hiredis)"
    return f"redis-py {redis.__version__} with hiredis"


if __name__ == "__main__":
    main()
