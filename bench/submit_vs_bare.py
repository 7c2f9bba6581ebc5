"""Submit path of the real AirDisplay server against a bare FastAPI route of the same shape.

Both servers run as child processes pinned to CPU 0; wrk runs pinned to CPU 1 and POSTs {"text":"hello"}
to a different pre-registered banner on every request (bench/submit.lua), so every AirDisplay submit is a
201 that goes through activation, a turn and a durable group commit. Runs alternate between the servers;
the medians of the runs are reported.

--sustained is the steady state instead of a burst: messages show for --message-seconds (2 s) and expire
inside the measured runs, wrk goes round a smaller fleet (--banners 30,000) so every banner is reused
once its message has expired, and every request carries an operator key (`Authorization: Bearer`, which
the bare route ignores). Both servers get the same requests.

    uv run python bench/submit_vs_bare.py [--runs 3 --duration 10 --connections 64 --profile 10]
    uv run python bench/submit_vs_bare.py --sustained [--message-seconds 2 --banners 30000]
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

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
    main_thread_cpu_seconds,
    median,
    rss_mb,
    stop_on_signals,
    table,
    wait_for_quiet_machine,
    write_json,
)
from airdisplay.access import KeysFile, Role

BENCH = Path(__file__).resolve().parent
LUA = BENCH / "submit.lua"
SERVER_CPU, LOAD_CPU = 0, 1
#: A run during which other processes used more CPU than this (on average) is run again.
DISTURBED_CPUS = 0.15
#: py-spy samples per second: 2,000 samples in a 10 s profile put 1% at +-0.2%.
PROFILE_HZ = 200
#: --rate-limited: the limiter counts every submit of wrk's one client but never refuses one.
UNREACHED_SUBMIT_LIMIT = ["--submit-rate", "1e9", "--submit-burst", "1000000000"]
#: --sustained: a banner comes round again every banners / rate seconds (30,000 / ~3,000 req/s = ~10 s
#: here), well after its message (2 s) has expired, so every submit is a 201 on a reused banner.
SUSTAINED_BANNERS, SUSTAINED_MESSAGE_SECONDS = 30_000, 2.0
#: The burst's messages outlast the run: no expiry happens while it is measured.
BURST_MESSAGE_SECONDS = 3600.0
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass
class WrkRun:
    server: str
    run: str
    requests: int
    seconds: float
    per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    ids_used: int
    other_cpus: float = 0.0
    attempts: int = 1
    #: The server's CPU time (all threads) over the requests it answered: on a shared machine a steadier
    #: figure than req/s, which other processes' load moves.
    cpu_us_per_request: float = 0.0
    #: The part of it in the main thread (the event loop); the rest is the other threads' (the store's).
    loop_cpu_us_per_request: float = 0.0


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip()).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_MS[unit]


def parse_wrk(server: str, run: str, out: str) -> WrkRun:
    """The figures of one wrk --latency run with bench/submit.lua."""
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if total is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    seconds = _ms(total.group(2) + total.group(3)) / 1000
    latency = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    max_latency = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    ids = re.search(r"ids_used (\d+)", out)
    return WrkRun(
        server=server,
        run=run,
        requests=int(total.group(1)),
        seconds=seconds,
        per_second=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(latency["50"]),
        p99_ms=_ms(latency["99"]),
        max_ms=_ms(max_latency.group(1)) if max_latency else 0.0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(x) for x in sock.groups()) if sock else 0,
        ids_used=int(ids.group(1)) if ids else 0,
    )


class Target:
    """One server under load; AirDisplay targets hand out fresh banner numbers run after run."""

    def __init__(self, server: ServerProcess, banners: int | None, key: str = "") -> None:
        self.server = server
        self.banners = banners
        self.key = key
        self.next_id = 0

    def lua_args(self, args: argparse.Namespace, threads: int) -> list[str]:
        """bench/submit.lua's arguments: first banner, banners to use, wrk threads, API key."""
        if args.sustained:  # round and round the same banners, on both servers
            return ["--", "0", str(args.banners), str(threads), self.key]
        # The bare app takes any id; AirDisplay gets the seeded banners no earlier run has used.
        span = 1_000_000 if self.banners is None else self.banners - self.next_id
        if span <= 0:
            raise RuntimeError("out of seeded banners: raise --banners")
        return ["--", str(self.next_id), str(span), str(threads), self.key]

    def wrk(self, args: argparse.Namespace, seconds: float, run: str) -> WrkRun:
        argv = pinned(
            LOAD_CPU,
            ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds:g}s", "--latency"]
            + ["-s", str(LUA), self.server.base_url, *self.lua_args(args, args.threads)],
        )
        out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=seconds + 60).stdout
        result = parse_wrk(self.server.name, run, out)
        if self.banners is not None and not args.sustained:
            self.next_id += result.ids_used
            if self.next_id > self.banners:
                print(
                    f"  warning: {self.server.name} wrapped around its banners: expect 409s", file=sys.stderr
                )
        return result


def measured_run(
    target: Target, args: argparse.Namespace, seconds: float, label: str, pids: list[int]
) -> WrkRun:
    """One wrk run on a quiet machine; run again (up to --retries times) if other processes took CPU."""
    for attempt in range(1, args.retries + 2):
        if not args.no_wait:
            wait_for_quiet_machine(args.max_wait)
        others = ForeignLoad(pids)
        cpu_before = cpu_seconds(target.server.pid)
        loop_before = main_thread_cpu_seconds(target.server.pid)
        result = target.wrk(args, seconds, label)
        used = cpu_seconds(target.server.pid) - cpu_before
        loop_used = main_thread_cpu_seconds(target.server.pid) - loop_before
        result.cpu_us_per_request = used / max(result.requests, 1) * 1e6
        result.loop_cpu_us_per_request = loop_used / max(result.requests, 1) * 1e6
        result.other_cpus, result.attempts = others.cpus(), attempt
        if result.other_cpus < DISTURBED_CPUS or attempt > args.retries:
            return result
        print(
            f"  {target.server.name} {label}: other processes used {result.other_cpus:.2f} CPUs; again",
            file=sys.stderr,
        )
    raise AssertionError("unreachable")


def shown_messages(database: Path) -> int:
    """Banners whose stored state holds a message (each one a submit that got its 201, or was in flight)."""
    conn = sqlite3.connect(database)
    try:
        row = conn.execute(
            "SELECT count(*) FROM actor_state "
            "WHERE key='banner' AND instr(CAST(value AS TEXT), '\"message\":{') > 0"
        ).fetchone()
    finally:
        conn.close()
    return int(row[0])


def profile(target: Target, args: argparse.Namespace, tmp: Path) -> tuple[str, WrkRun]:
    """Sample the AirDisplay server with py-spy under the same load: the top functions as tables."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    raw = tmp / "airdisplay-submit.pyspy.txt"
    record = pinned(
        LOAD_CPU,
        [py_spy, "record", "-p", str(target.server.pid), "-d", str(args.profile), "-r", str(PROFILE_HZ)]
        # --nonblocking: reading the stacks without pausing the process. Pausing (the default, and
        # --native) stops the process mostly at syscall exits and credits syscalls tens of times over.
        + ["--nonblocking", "--threads", "--format", "raw", "-o", str(raw)],
    )
    load = subprocess.Popen(
        pinned(
            LOAD_CPU,
            ["wrk", "-t1", f"-c{args.connections}", f"-d{args.profile + 4}s", "--latency", "-s", str(LUA)]
            + [target.server.base_url, *target.lua_args(args, 1)],
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)
    subprocess.run(record, check=True, capture_output=True, timeout=args.profile + 60)
    out, _ = load.communicate(timeout=60)
    run = parse_wrk(target.server.name, "profile", out)
    return summarize_profile(raw, f"{run.per_second:,.0f}", args.profile * PROFILE_HZ), run


#: Coarse parts of a request on the main thread, first match wins; each is (label, stack substrings).
#: Stacks read without pausing the process are often cut short at the root, so each part is recognised by
#: frames near the leaf too, not only by its entry point.
PARTS = [
    (
        "actor runtime: EmbeddedRuntime.submit_message and below",
        ("EmbeddedRuntime.", "airdisplay/actors/", "airdisplay/runtimes/", "airdisplay/domain/"),
    ),
    (
        "sync dependencies run in the thread pool (run_in_threadpool)",
        ("run_in_threadpool", "anyio/to_thread.py", "run_sync_in_worker_thread"),
    ),
    (
        "FastAPI: solving dependencies, parsing and validating the request",
        ("solve_dependencies", "fastapi/dependencies/", "Request.body", "Request.json"),
    ),
    ("routing: matching the path to a route", ("matches (", "_match (")),
    ("sending the response", ("Response.__call__", "RequestResponseCycle.send")),
    (
        "rest of the request: middleware, FastAPI/Starlette glue",
        ("run_asgi", "starlette/", "fastapi/", "airdisplay/api/"),
    ),
    ("uvloop, HTTP parsing, other (no Python frame of the above)", ("",)),
]


def summarize_profile(raw: Path, rate: str, expected: int) -> str:
    """Tables of the main thread's samples: by part of the request, own time, inclusive.

    Time in the garbage collector is credited to the Python line that triggered it.
    """
    own: collections.Counter[str] = collections.Counter()
    parts: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    main = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not frames[0].endswith("MainThread"):
            continue  # idle worker threads; the store writer barely runs Python code
        n = int(count)
        main += n
        own[frames[-1]] += n
        label = next(label for label, keys in PARTS if any(k in stack for k in keys))
        parts[label] += n
        for frame in set(frames[1:]):
            inclusive[frame] += n
    by_part = table(
        ("main thread: part of the request", "share"),
        [(label, f"{parts[label] / main:.1%}") for label, _ in PARTS],
    )
    top_own = table(
        ("main thread: own time", "share"),
        [(f, f"{n / main:.1%}") for f, n in own.most_common(15)],
    )
    # Frames shared by nearly every sample (the server loop, the middleware chain) say nothing.
    below = [(f, n) for f, n in inclusive.most_common() if n < 0.75 * main][:25]
    top_incl = table(("main thread: inclusive", "share"), [(f, f"{n / main:.1%}") for f, n in below])
    return (
        f"py-spy record --nonblocking, {PROFILE_HZ} Hz: {main:,} samples of the main thread, busy in "
        f"{main / max(expected, 1):.0%} of them; {rate} req/s while sampled (sampling slows the server). "
        f"Raw stacks: {raw}\n\n{by_part}\n\n{top_own}\n\n{top_incl}"
    )


FAST_PATH_OFF = "off (every submit through the FastAPI route)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--banners", type=int, help="banners to seed: one per request (350,000), or those --sustained reuses"
    )
    parser.add_argument(
        "--sustained",
        action="store_true",
        help="steady state: messages expire within the runs, banners are reused, an operator key on each",
    )
    parser.add_argument(
        "--message-seconds",
        type=float,
        help=f"display seconds ({BURST_MESSAGE_SECONDS:g}; {SUSTAINED_MESSAGE_SECONDS:g} with --sustained)",
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per server")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=int, default=0, help="then py-spy AirDisplay for N seconds")
    parser.add_argument(
        "--rate-limited",
        action="store_true",
        help="AirDisplay with its per-client submit limiter on (at a rate wrk never reaches)",
    )
    parser.add_argument(
        "--no-fast-path",
        action="store_true",
        help="serve AirDisplay's submits through the FastAPI route only (api/_submit.py's fast path off)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine first")
    parser.add_argument("--max-wait", type=float, default=600.0, help="longest wait for a quiet machine (s)")
    parser.add_argument("--retries", type=int, default=2, help="re-runs of a run that others disturbed")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args()
    if args.banners is None:
        args.banners = SUSTAINED_BANNERS if args.sustained else 350_000
    if args.message_seconds is None:
        args.message_seconds = SUSTAINED_MESSAGE_SECONDS if args.sustained else BURST_MESSAGE_SECONDS
    stop_on_signals()  # servers are stopped in `finally` on SIGINT/SIGTERM too
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")

    at_start = conditions() if args.no_wait else wait_for_quiet_machine(args.max_wait)
    tmp = Path(tempfile.mkdtemp(prefix="airdisplay-bench-"))
    data_dir = tmp / "data"
    print(f"seeding {args.banners:,} banners in {data_dir} ...", file=sys.stderr)
    seed = run_async(seed_fleet(data_dir, args.banners))
    key = KeysFile(data_dir).create(Role.OPERATOR, "bench")[1] if args.sustained else ""

    air_port, bare_port = free_port(), free_port()
    air = ServerProcess(
        "AirDisplay",
        pinned(
            SERVER_CPU,
            airdisplay_command()
            + ["serve", "--port", str(air_port), "--data-dir", str(data_dir)]
            + ["--message-seconds", f"{args.message_seconds:g}"]
            + (UNREACHED_SUBMIT_LIMIT if args.rate_limited else NO_SUBMIT_LIMIT)
            + (["--no-submit-fast-path"] if args.no_fast_path else []),
        ),
        air_port,
        tmp / "airdisplay.log",
    )
    uvicorn = [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH), "bare_app:app"]
    uvicorn += ["--host", "127.0.0.1", "--port", str(bare_port), "--loop", "uvloop", "--http", "httptools"]
    uvicorn += ["--no-access-log", "--workers", "1", "--log-level", "warning"]
    bare = ServerProcess("bare FastAPI", pinned(SERVER_CPU, uvicorn), bare_port, tmp / "bare.log")
    targets = [Target(bare, None, key), Target(air, args.banners, key)]
    runs: list[WrkRun] = []
    profile_text = ""
    before = conditions()
    try:
        for target in targets:
            target.server.start()
            target.server.wait_ready()
        pids = [t.server.pid for t in targets]
        for target in targets:
            print(f"warm-up {target.server.name} {args.warmup:g} s ...", file=sys.stderr)
            runs.append(measured_run(target, args, args.warmup, "warm-up", pids))
        for i in range(1, args.runs + 1):
            for target in targets:
                result = measured_run(target, args, args.duration, str(i), pids)
                print(f"run {i} {target.server.name}: {result.per_second:,.0f} req/s", file=sys.stderr)
                runs.append(result)
        rss = {t.server.name: (rss_mb(t.server.pid), rss_mb(t.server.pid, "VmHWM")) for t in targets}
        if args.profile:
            print(f"profiling AirDisplay for {args.profile} s ...", file=sys.stderr)
            profile_text, profiled = profile(targets[1], args, tmp)
            runs.append(profiled)
    finally:
        for target in targets:
            target.server.stop()
    after = conditions()
    air_ok = sum(r.requests - r.non_2xx for r in runs if r.server == air.name)
    stored = shown_messages(data_dir / "airdisplay.db")

    measured = [r for r in runs if r.run not in ("warm-up", "profile")]

    def med(server: str, field: str) -> float:
        return median([getattr(r, field) for r in measured if r.server == server])

    summary = []
    for target in targets:
        name = target.server.name
        summary.append(
            (
                name,
                f"{med(name, 'per_second'):,.0f}",
                f"{med(name, 'p50_ms'):.1f}",
                f"{med(name, 'p99_ms'):.1f}",
                f"{sum(r.non_2xx for r in runs if r.server == name):,}",
                f"{sum(r.socket_errors for r in runs if r.server == name):,}",
                f"{rss[name][0]:,.0f} / {rss[name][1]:,.0f}",
            )
        )
    ratio = med(air.name, "per_second") / med(bare.name, "per_second")
    cpu_ratio = med(bare.name, "cpu_us_per_request") / med(air.name, "cpu_us_per_request")
    print(f"## Submit path vs bare FastAPI{', sustained' if args.sustained else ''}\n")
    print(
        f'POST /api/v1/banners/{{id}}/message {{"text":"hello"}}, wrk -t{args.threads} '
        f"-c{args.connections}, {args.runs} x {args.duration:g} s per server "
        f"after {args.warmup:g} s warm-up, "
        f"alternating; server on CPU {SERVER_CPU}, wrk on CPU {LOAD_CPU}; medians; AirDisplay's submit "
        f"rate limiter {'on (at a rate never reached)' if args.rate_limited else 'off'}; "
        f"the submit fast path {FAST_PATH_OFF if args.no_fast_path else 'on'}; "
        + (
            f"sustained: {args.banners:,} banners reused, messages expire after {args.message_seconds:g} s "
            "(inside the runs), an operator key on every request.\n"
            if args.sustained
            else f"burst: a fresh banner per request, messages show {args.message_seconds:g} s.\n"
        )
    )
    print(
        table(
            ("server", "req/s", "p50 ms", "p99 ms", "non-2xx (all runs)", "socket errors", "RSS / peak MB"),
            summary,
        )
    )
    print(f"\nAirDisplay / bare FastAPI throughput: **{ratio:.0%}**")
    print(
        f"\nServer CPU per request, bare FastAPI / AirDisplay: {cpu_ratio:.0%} "
        f"({med(bare.name, 'cpu_us_per_request'):,.0f} / {med(air.name, 'cpu_us_per_request'):,.0f} us)\n"
    )
    print(
        table(
            ("server", "run", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "non-2xx", "banners used")
            + ("CPU us/req", "other CPUs", "attempt"),
            [
                (
                    r.server,
                    r.run,
                    f"{r.requests:,}",
                    f"{r.per_second:,.0f}",
                    f"{r.p50_ms:.1f}",
                    f"{r.p99_ms:.1f}",
                    f"{r.max_ms:.1f}",
                    f"{r.non_2xx:,}",
                    f"{r.ids_used:,}" if r.server == air.name else "-",
                    f"{r.cpu_us_per_request:,.0f}" if r.cpu_us_per_request else "-",  # profile: not read
                    f"{r.other_cpus:.2f}",
                    str(r.attempts),
                )
                for r in runs
            ],
        )
    )
    print()
    print(
        table(
            ("check", "value"),
            [
                (
                    "banners seeded in-process",
                    f"{seed.count:,} in {seed.seconds:.1f} s ({seed.per_second:,.0f}/s)",
                ),
                ("AirDisplay 2xx answers (all runs in the table)", f"{air_ok:,}"),
                (
                    "banners showing a message in the database",
                    f"{stored:,} (messages expire: fewer than the 2xx)"
                    if args.sustained
                    else f"{stored:,} (>= 2xx; extra = in flight at a run's end)",
                ),
                (
                    "runs repeated: other processes took CPU",
                    f"{sum(r.attempts - 1 for r in runs)} (limit {DISTURBED_CPUS} CPUs; see 'other CPUs')",
                ),
                ("at the start", at_start),
                ("before the runs", before),
                ("after the runs", after),
            ],
        )
    )
    if profile_text:
        print("\n### Where AirDisplay's time goes\n")
        print(profile_text)
    print()
    print(machine())
    write_json(
        args.json,
        "submit_vs_bare",
        {
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "summary": [
                {
                    "server": t.server.name,
                    "per_second": med(t.server.name, "per_second"),
                    "p50_ms": med(t.server.name, "p50_ms"),
                    "p99_ms": med(t.server.name, "p99_ms"),
                    "non_2xx": sum(r.non_2xx for r in runs if r.server == t.server.name),
                    "socket_errors": sum(r.socket_errors for r in runs if r.server == t.server.name),
                    "rss_mb": rss[t.server.name][0],
                    "peak_rss_mb": rss[t.server.name][1],
                }
                for t in targets
            ],
            "ratio": ratio,
            "cpu_ratio": cpu_ratio,
            "runs": [asdict(r) for r in runs],
            "airdisplay_2xx": air_ok,
            "stored_messages": stored,
            "conditions": {"at_start": at_start, "before": before, "after": after},
        },
    )
    if args.keep:
        print(f"\ndata kept in {tmp}")
    elif args.profile:
        shutil.rmtree(data_dir, ignore_errors=True)  # keep only the logs and the profile's raw stacks
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
