"""What tracing costs the submit path: AirDisplay with tracing off against the same server with tracing on.

The servers are started together on copies of one seeded fleet and take turns under the same load as
bench/submit_vs_bare.py (wrk on CPU 1 POSTs {"text":"hello"} to a fresh pre-registered banner per request,
bench/submit.lua; each server pinned to CPU 0), each round starting with the next server, so a drift of
the machine between runs hits all of them alike. Tracing on samples `--ratio` of the requests
(`parentbased_traceidratio`) and exports over OTLP/HTTP to a stand-in collector in this process
(_otlp_sink.py). `--before PATH` adds a third server: the code of another checkout's `src` (say the commit
before tracing) with this environment's packages, to show what tracing off costs against not having it.
`--before` with this checkout's own `src` is an A/A run: what the method itself cannot tell apart;
`--no-traced` leaves the tracing-on server out, for more rounds of off against `--before`.

    uv run python bench/tracing_cost.py [--ratio 0.01 --runs 5 --duration 10 --before /tmp/before/src]
    uv run python bench/tracing_cost.py --no-traced --runs 14 --duration 6 --before /tmp/before/src

Reported per server: the median of its runs' server CPU per request (all its threads; the steadiest
figure), and of its requests per second; and, round by round, its CPU per request against tracing off in
the same round (the median of those ratios and their range), which the machine's drift between rounds
does not move.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
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
from _otlp_sink import OtlpSink
from _report import conditions, median, stop_on_signals, table, wait_for_quiet_machine, write_json
from submit_vs_bare import BURST_MESSAGE_SECONDS, SERVER_CPU, Target, WrkRun, measured_run


def server(name: str, data_dir: Path, tmp: Path, env: dict[str, str]) -> ServerProcess:
    port = free_port()
    argv = airdisplay_command() + ["serve", "--port", str(port), "--data-dir", str(data_dir)]
    argv += ["--message-seconds", f"{BURST_MESSAGE_SECONDS:g}", *NO_SUBMIT_LIMIT]
    log = tmp / f"{name.replace(' ', '-')}.log"
    return ServerProcess(name, pinned(SERVER_CPU, argv), port, log, env=env or None)


def seed_with(src: Path, data_dir: Path, banners: int) -> None:
    """Seed the fleet with the code of `src`, in a process of its own: a database seeded by newer code can
    hold what older code refuses (a newer schema version, a banner field it does not know)."""
    print(f"seeding {banners:,} banners with {src} ...", file=sys.stderr)
    script = (
        "import sys; from pathlib import Path; from _fleet import run_async, seed_fleet; "
        f"run_async(seed_fleet(Path({str(data_dir)!r}), {banners}))"
    )
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{Path(__file__).parent}"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ratio", type=float, default=0.01, help="share of requests sampled (0.01)")
    parser.add_argument("--before", type=Path, help="another checkout's src/, measured as a third server")
    parser.add_argument(
        "--no-traced", action="store_true", help="leave the tracing-on server out (off against --before only)"
    )
    parser.add_argument("--banners", type=int, default=400_000, help="banners seeded (one per request)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per server")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine first")
    parser.add_argument("--max-wait", type=float, default=600.0, help="longest wait for a quiet machine (s)")
    parser.add_argument("--retries", type=int, default=2, help="re-runs of a run that others disturbed")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args()
    args.sustained = False  # what submit_vs_bare's Target reads: a fresh banner per request
    stop_on_signals()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")

    at_start = conditions() if args.no_wait else wait_for_quiet_machine(args.max_wait)
    tmp = Path(tempfile.mkdtemp(prefix="airdisplay-tracing-"))
    seeded = tmp / "data-off"
    print(f"seeding {args.banners:,} banners ...", file=sys.stderr)
    run_async(seed_fleet(seeded, args.banners))
    sink = OtlpSink()
    traced_env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": f"{args.ratio:g}",
    }
    on_name = f"tracing on, {args.ratio:.0%} sampled"
    servers = [server("tracing off", seeded, tmp, {})]
    if not args.no_traced:
        servers.append(server(on_name, tmp / "data-on", tmp, traced_env))
        shutil.copytree(seeded, tmp / "data-on")
    if args.before is not None:
        seed_with(args.before, tmp / "data-before", args.banners)
        env = {"PYTHONPATH": str(args.before)}
        servers.append(server("before tracing", tmp / "data-before", tmp, env))
    targets = [Target(s, args.banners) for s in servers]
    runs: list[WrkRun] = []
    with sink:
        try:
            for s in servers:
                s.start()
                s.wait_ready()
            pids = [s.pid for s in servers]
            for target in targets:
                runs.append(measured_run(target, args, args.warmup, "warm-up", pids))
            for i in range(1, args.runs + 1):
                # Each round starts with the next server: an A/A run (the same code in two places) showed
                # the place in the round alone worth 4.4% of CPU a request on this machine.
                first = (i - 1) % len(targets)
                for target in targets[first:] + targets[:first]:
                    result = measured_run(target, args, args.duration, str(i), pids)
                    print(
                        f"run {i} {target.server.name}: {result.per_second:,.0f} req/s, "
                        f"{result.cpu_us_per_request:,.0f} us CPU a request "
                        f"({result.loop_cpu_us_per_request:,.0f} of them in the event loop's thread)",
                        file=sys.stderr,
                    )
                    runs.append(result)
        finally:
            for s in servers:
                s.stop()
    measured = [r for r in runs if r.run != "warm-up"]

    def med(name: str, field: str) -> float:
        return median([getattr(r, field) for r in measured if r.server == name])

    def paired(name: str) -> str:
        """CPU a request against tracing off in the same round: the median of the rounds' ratios and their
        range. The machine drifts between rounds (tracing off alone spans 15% over ten); within a round
        the servers meet the same drift."""
        ratios = sorted(
            r.cpu_us_per_request / off.cpu_us_per_request - 1
            for r in measured
            if r.server == name
            for off in measured
            if off.server == "tracing off" and off.run == r.run
        )
        return f"{median(ratios):+.1%} ({ratios[0]:+.1%} to {ratios[-1]:+.1%})"

    base_cpu, base_rate = med("tracing off", "cpu_us_per_request"), med("tracing off", "per_second")
    rows = []
    for s in servers:
        cpu, rate = med(s.name, "cpu_us_per_request"), med(s.name, "per_second")
        rows.append(
            (
                s.name,
                f"{cpu:,.0f}",
                f"{med(s.name, 'loop_cpu_us_per_request'):,.0f}",
                f"{cpu / base_cpu - 1:+.1%}",
                paired(s.name),
                f"{rate:,.0f}",
                f"{rate / base_rate - 1:+.1%}",
                f"{med(s.name, 'p99_ms'):.1f}",
                f"{sum(r.non_2xx for r in runs if r.server == s.name):,}",
            )
        )
    print("## What tracing costs the submit path\n")
    print(
        f'POST /api/v1/banners/{{id}}/message {{"text":"hello"}}, wrk -t{args.threads} -c{args.connections}, '
        f"{args.runs} x {args.duration:g} s per server after {args.warmup:g} s warm-up, the servers taking "
        f"turns; each server on CPU {SERVER_CPU}, wrk on CPU 1; medians. Tracing on: "
        f"parentbased_traceidratio {args.ratio:g}, OTLP/HTTP to a stand-in collector ({sink.exports:,} "
        f"exports). Machine at the start: {at_start}.\n"
    )
    print(
        table(
            (
                "server",
                "CPU us / request",
                "of it, loop thread",
                "vs off",
                "vs off, round by round: median (range)",
                "req/s",
                "vs off",
                "p99 ms",
                "non-2xx (all runs)",
            ),
            rows,
        )
    )
    print()
    print(
        table(
            (
                "server",
                "run",
                "req/s",
                "CPU us / request",
                "of it, loop thread",
                "p99 ms",
                "other CPUs",
                "attempt",
            ),
            [
                (
                    r.server,
                    r.run,
                    f"{r.per_second:,.0f}",
                    f"{r.cpu_us_per_request:,.0f}",
                    f"{r.loop_cpu_us_per_request:,.0f}",
                    f"{r.p99_ms:.1f}",
                    f"{r.other_cpus:.2f}",
                    str(r.attempts),
                )
                for r in runs
            ],
        )
    )
    write_json(
        args.json,
        "tracing_cost",
        {"ratio": args.ratio, "runs": [vars(r) for r in runs]},
        [("at the start", at_start)],
    )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
