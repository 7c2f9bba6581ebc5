"""The embedded runtime against Dapr with one and with two replicas: the same workloads, side by side.

Set-ups (bench/_dapr_cluster.py): the embedded runtime, one `airdisplay serve` process; Dapr with 1 and
with 2 replicas (`LocalDapr`: placement, scheduler, per replica daprd + `airdisplay serve --runtime dapr`)
over a Redis of its own (no persistence). Each set-up runs all its processes on CPU 0; wrk and this
script's client run on CPU 1. Workloads, each on a fresh set-up:

- submit: wrk POSTs a message to the next unused banner, same connections for every set-up (two wrk
  threads; with two replicas each thread sends to one); req/s, p50/p99, and CPU per request of all the
  set-up's processes (app, daprd, Redis, scheduler, placement) from /proc/PID/stat;
- activation: registering never-used banners (the call that activates a fresh actor) paced at fixed
  rates (500/s, Dapr's published figure's rate, then a low one);
- expiries: N messages submitted at once; a live wave (seen on the WebSocket stream: expiries/s,
  lateness) and a wave due while the actors are stopped, all overdue when they start again.

    uv run python bench/dapr_compare.py [--quick] [--only dapr-2,expiries] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _dapr_cluster import (
    ROLES,
    HttpPool,
    SetUp,
    dapr_versions,
    epoch,
    fleet,
    missing_tools,
    paced_register,
    register_all,
    submit_all,
)
from _fleet import banner_id, run_async, seed_fleet
from _report import (
    ForeignLoad,
    conditions,
    machine,
    median,
    percentile,
    stop_on_signals,
    table,
    wait_for_quiet_machine,
    write_json,
)
from _ws_reader import open_reader
from submit_vs_bare import WrkRun, parse_wrk

SERVER_CPU, LOAD_CPU = 0, 1
SETUPS = {"embedded": 0, "dapr-1": 1, "dapr-2": 2}  # name -> Dapr replicas (0: the embedded runtime)
WORKLOADS = ("submit", "activation", "expiries")
#: Messages of the submit workload show this long: none expires while it runs.
SUBMIT_MESSAGE_SECONDS = 3600
WRK_THREADS = 2
#: Connections per server the paced client may hold; a request beyond waits (and its latency shows it).
PACED_CONNECTIONS = 256
#: Banners per WebSocket stream. They go in the URL (`?banners=`), and uvicorn answers a request line
#: over ~8 KB with 414: 500 ids of 8 characters fit.
STREAM_BANNERS = 500
#: Parts every Dapr replica shares, by their role in the CPU tables.
SHARED = {"Redis": "redis", "the scheduler": "scheduler"}
#: Dapr's own figures (dapr/dapr tests/perf/report/charts/v1.17.0/actors/README.md, in the dapr@v1.18.3
#: module): Kubernetes, 3 nodes of 4 cores, test app on the Java SDK, sidecar limited to 0.5 vCPU.
PUBLISHED = {
    "activation_rate": 500,
    "activation_ms": {"p50": 2.30, "p90": 2.98, "p99": 6.89},
    "reminder_triggers_per_second": 15_463,
    "source": "dapr/dapr tests/perf/report/charts/v1.17.0/actors/README.md",
}

LUA = """-- written by bench/dapr_compare.py: POST {"text":"hello"} to the next unused banner, as
-- bench/submit.lua does; wrk thread i sends to ports[i mod #ports + 1]: two replicas share the load.
local ports = { %s }
local threads = {}
local body = '{"text":"hello"}'
local headers = { ["Content-Type"] = "application/json" }

function setup(thread)
  local n = #threads
  thread:set("tid", n)
  thread.addr = wrk.lookup("127.0.0.1", tostring(ports[n %% #ports + 1]))[1]
  table.insert(threads, thread)
end

function init(args)
  first = tonumber(args[1]) or 0
  span = tonumber(args[2]) or 1000000
  nthreads = tonumber(args[3]) or 1
  counter = 0
end

function request()
  local n = first + (tid + counter * nthreads) %% span
  counter = counter + 1
  return wrk.format("POST", string.format("/api/v1/banners/b%%07d/message", n), headers, body)
end

-- Threads take turns over the banners, so a thread that sent more reached further: report the
-- span up to the furthest banner any thread took, where the next run may start.
function done(summary, latency, requests)
  local used = 0
  for _, thread in ipairs(threads) do
    local count = thread:get("counter")
    if count > 0 then
      used = math.max(used, thread:get("tid") + (count - 1) * thread:get("nthreads") + 1)
    end
  end
  io.write(string.format("ids_used %%d\\n", used))
end
"""


def wave_id(number: int) -> str:
    """Banners of the activation and expiry workloads: x0000000.. (the submit workload's are b...)."""
    return f"x{number:07d}"


@dataclass
class SubmitRun:
    wrk: WrkRun
    cpu: dict[str, float]  # CPU seconds by role during the run
    other_cpus: float


@dataclass
class Result:
    """Everything measured on one set-up."""

    name: str
    replicas: int
    affinity: str = ""
    banners_registered: str = ""
    submit_runs: list[SubmitRun] = field(default_factory=list)
    activation: list[dict[str, Any]] = field(default_factory=list)
    live: dict[str, Any] = field(default_factory=dict)
    restart: dict[str, Any] = field(default_factory=dict)
    conditions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def submit_summary(self) -> dict[str, Any]:
        measured = [r for r in self.submit_runs if r.wrk.run != "warm-up"]
        if not measured:
            return {}
        requests = sum(r.wrk.requests for r in measured)
        seconds = sum(r.wrk.seconds for r in measured)
        cpu = {role: sum(r.cpu.get(role, 0.0) for r in measured) for role in ROLES}
        return {
            "per_second": median([r.wrk.per_second for r in measured]),
            "p50_ms": median([r.wrk.p50_ms for r in measured]),
            "p99_ms": median([r.wrk.p99_ms for r in measured]),
            "non_2xx": sum(r.wrk.non_2xx for r in self.submit_runs),
            "socket_errors": sum(r.wrk.socket_errors for r in self.submit_runs),
            "cpu_ms_per_request": {role: 1000 * s / requests for role, s in cpu.items()},
            "cpu_ms_total": 1000 * sum(cpu.values()) / requests,
            "cpus_busy": sum(cpu.values()) / seconds,
            "other_cpus": max(r.other_cpus for r in measured),
        }


# -- submit ------------------------------------------------------------------------------------------


def wrk_run(
    setup: SetUp, lua: Path, first: int, span: int, seconds: float, label: str, args: Any
) -> SubmitRun:
    argv = ["wrk", f"-t{WRK_THREADS}", f"-c{args.connections}", f"-d{seconds:g}s", "--latency"]
    argv += ["--timeout", "30s", "-s", str(lua), setup.urls[0], "--", str(first), str(span), str(WRK_THREADS)]
    before = setup.cpu_by_role()
    others = ForeignLoad([pid for pids in setup.pids().values() for pid in pids])
    out = subprocess.run(
        ["taskset", "-c", str(LOAD_CPU), *argv],
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 90,
    ).stdout
    after = setup.cpu_by_role()
    return SubmitRun(
        parse_wrk(setup.name, label, out), {r: after[r] - before.get(r, 0.0) for r in after}, others.cpus()
    )


def submit_workload(result: Result, setup: SetUp, args: Any, tmp: Path) -> None:
    """Seed (embedded, in-process) or register (Dapr, over HTTP) banners, then a warm-up and the wrk runs."""
    if not setup.is_dapr:
        seeded = run_async(seed_fleet(setup.workdir / "data", args.embedded_banners, progress=False))
        result.banners_registered = f"{seeded.count:,} seeded in-process ({seeded.per_second:,.0f}/s)"
    setup.start(SUBMIT_MESSAGE_SECONDS)
    result.affinity = setup.affinity()
    lua = tmp / f"submit-{setup.name}.lua"
    lua.write_text(LUA % ", ".join(url.rsplit(":", 1)[1] for url in setup.urls))
    available = args.embedded_banners if not setup.is_dapr else 0
    rate, registering = 0.0, 0.0

    def ensure(count: int) -> None:
        nonlocal available, rate, registering
        count = min(count, args.dapr_banners_max)
        if not setup.is_dapr or count <= available:
            return
        ids = [banner_id(n) for n in range(available, count)]
        started = time.perf_counter()
        statuses = run_async(_register(setup, ids, args.connections))
        registering += time.perf_counter() - started
        if set(statuses) != {201}:
            print(f"  {setup.name}: registering answered {statuses}", file=sys.stderr)
        rate = rate or len(ids) / (time.perf_counter() - started)
        available = count

    ensure(args.dapr_banners_first)
    next_id = 0
    plan = [("warm-up", args.warmup)] + [(str(i), args.duration) for i in range(1, args.runs + 1)]
    for label, seconds in plan:
        ensure(next_id + math.ceil(rate * seconds * 1.5) + 2 * args.connections)
        run = wrk_run(setup, lua, next_id, max(available - next_id, 1), seconds, label, args)
        if run.wrk.ids_used > available - next_id:
            print(f"  {setup.name} {label}: ran out of banners (409s follow)", file=sys.stderr)
        next_id += run.wrk.ids_used
        rate = max(run.wrk.ids_used / seconds, rate if label == "warm-up" else 0.0)
        result.submit_runs.append(run)
        print(f"  {setup.name} submit {label}: {run.wrk.per_second:,.0f} req/s", file=sys.stderr)
    if setup.is_dapr:
        result.banners_registered = f"{available:,} registered over HTTP in {registering:.0f} s"


async def _register(setup: SetUp, ids: list[str], concurrency: int) -> dict[int, int]:
    pools = [HttpPool(url, concurrency) for url in setup.urls]
    try:
        return await register_all(pools, ids, concurrency)
    finally:
        for pool in pools:
            await pool.close()


# -- activation ------------------------------------------------------------------------------------


async def activation_workload(setup: SetUp, rates: list[tuple[float, int]]) -> list[dict[str, Any]]:
    """Register never-used banners at each (rate, count); each call activates a fresh actor."""
    rows, first = [], 0
    for rate, count in rates:
        pools = [HttpPool(url, PACED_CONNECTIONS) for url in setup.urls]
        ids = [wave_id(n) for n in range(first, first + count)]
        first += count
        paced = await asyncio.wait_for(paced_register(pools, ids, rate), count / 5 + 120)
        for pool in pools:
            await pool.close()
        ms = [x * 1000 for x in paced.latencies]
        rows.append(
            {
                "rate": rate,
                "count": count,
                "achieved_per_second": count / paced.seconds,
                **{f"p{q}_ms": percentile(ms, q) for q in (50, 90, 99, 100)},
                "non_201": sum(n for status, n in paced.statuses.items() if status != 201),
                "statuses": dict(paced.statuses),
                "client_lag_p99_ms": percentile(paced.lags, 99) * 1000,
            }
        )
        print(f"  {setup.name} activation at {rate:g}/s: p99 {rows[-1]['p99_ms']:,.1f} ms", file=sys.stderr)
        await asyncio.sleep(2)  # let the Dapr set-up's backlog of events settle before the next rate
    return rows


# -- expiries --------------------------------------------------------------------------------------


async def live_wave(setup: SetUp, ids: list[str], concurrency: int, display: float) -> dict[str, Any]:
    """Submit to every banner at once and watch the expiries arrive on the WebSocket stream."""
    offset = time.time() - time.monotonic()  # CLOCK_MONOTONIC of a read -> wall clock
    seen: dict[str, tuple[float, float]] = {}  # banner -> (received, change.at)
    streams = math.ceil(len(ids) / STREAM_BANNERS)
    subscribed, expected = 0, len(ids)  # expected: the 201s, once they are known
    all_subscribed, all_seen = asyncio.Event(), asyncio.Event()

    def on_text(payload: bytes, now_ns: int) -> None:
        nonlocal subscribed
        if b'"subscribed"' in payload[:40]:
            subscribed += 1
            if subscribed == streams:
                all_subscribed.set()
        elif b'"message_expired"' in payload:
            frame = json.loads(payload)
            if frame["banner_id"] not in seen:
                seen[frame["banner_id"]] = (now_ns / 1e9 + offset, epoch(frame["at"]))
                if len(seen) >= expected:
                    all_seen.set()

    ws = setup.urls[0].replace("http://", "ws://") + "/api/v1/stream?banners="
    readers = [
        await asyncio.wait_for(open_reader(ws + ",".join(ids[i : i + STREAM_BANNERS]), on_text), 30)
        for i in range(0, len(ids), STREAM_BANNERS)
    ]
    await asyncio.wait_for(all_subscribed.wait(), 120)  # every stream has sent its snapshots
    pools = [HttpPool(url, concurrency) for url in setup.urls]
    started = time.time()
    due, statuses = await submit_all(pools, ids, concurrency)
    ended = time.time()
    expected = len(due)  # a banner whose registration failed answers 404 and never expires
    if len(seen) >= expected:
        all_seen.set()
    cpu0 = setup.cpu_by_role()
    limit = max(due.values(), default=ended) - time.time() + 60 + len(ids) / 10
    try:
        await asyncio.wait_for(all_seen.wait(), max(limit, 1.0))
    except TimeoutError:
        print(f"  {setup.name} live wave: {len(seen):,} of {expected:,} expiries seen", file=sys.stderr)
    cpu1 = setup.cpu_by_role()
    for reader in readers:
        assert reader.transport is not None
        reader.transport.close()
    try:
        listed = await fleet(pools[0])
    except (RuntimeError, OSError, asyncio.IncompleteReadError) as exc:
        print(f"  {setup.name} live wave: the fleet listing failed: {exc}", file=sys.stderr)
        listed = {}
    for pool in pools:
        await pool.close()
    received = [seen[b][0] for b in seen if b in due]
    turns = [seen[b][1] for b in seen if b in due]
    return {
        "count": len(ids),
        "display_seconds": display,
        "submit_statuses": statuses,
        "submit_seconds": ended - started,
        "submit_per_second": len(ids) / (ended - started),
        "due_window_s": max(due.values()) - min(due.values()) if due else 0.0,
        "submitting_ended_before_first_due": bool(due) and ended < min(due.values()),
        "expired_seen": len(received),
        "still_showing": sum(1 for b in ids if listed.get(b, {}).get("message") is not None),
        "expiries_per_second": _rate(received),
        "lateness_ms": _spread([(seen[b][0] - due[b]) * 1000 for b in seen if b in due]),
        "turn_lateness_ms": _spread([(seen[b][1] - due[b]) * 1000 for b in seen if b in due]),
        "first_to_last_turn_s": max(turns) - min(turns) if turns else 0.0,
        "cpu_ms_per_expiry": {r: 1000 * (cpu1[r] - cpu0.get(r, 0.0)) / max(len(seen), 1) for r in cpu1},
    }


async def restart_wave(setup: SetUp, ids: list[str], concurrency: int, display: float) -> dict[str, Any]:
    """Submit to every banner, stop the actors' processes before any is due, start them once all are."""
    pools = [HttpPool(url, concurrency) for url in setup.urls]
    started = time.time()
    due, statuses = await submit_all(pools, ids, concurrency)
    for pool in pools:
        await pool.close()
    stopping = time.time()
    setup.stop_apps()
    stopped = time.time()
    await asyncio.sleep(max(max(due.values()) + 1.0 - time.time(), 0.0))
    restarted = time.time()
    setup.start_apps()
    ready = time.time()
    pool = HttpPool(setup.urls[0], 4)
    deadline = time.monotonic() + 60 + len(ids) / 10
    listed: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    while True:
        try:
            listed = await fleet(pool)
        except (RuntimeError, OSError, asyncio.IncompleteReadError) as exc:  # polled again a second later
            errors.append(str(exc)[:300])
        showing = sum(1 for b in ids if listed.get(b, {}).get("message") is not None) if listed else len(ids)
        if showing == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    await pool.close()
    # Each banner's updated_at is the time of its expiry turn (nothing else changes it meanwhile).
    turns = [epoch(listed[b]["updated_at"]) for b in due if b in listed and listed[b]["message"] is None]
    return {
        "count": len(ids),
        "display_seconds": display,
        "submit_statuses": statuses,
        "submit_seconds": stopping - started,
        "stop_seconds": stopped - stopping,
        "expired_before_stop": sum(1 for t in turns if t < stopped),
        "behind_newest_s": restarted - max(due.values()),
        "behind_oldest_s": restarted - min(due.values()),
        "restart_to_ready_s": ready - restarted,
        "restart_to_first_expiry_s": min(turns) - restarted if turns else None,
        "restart_to_all_free_s": max(turns) - restarted if turns and showing == 0 else None,
        "expired": len(turns),
        "still_showing": showing,
        "expiries_per_second": _rate(turns),
        "listing_errors": len(errors),
        "listing_error": (errors[0] + "; server log: " + (setup.log_errors() or "-")) if errors else "",
    }


async def expiry_workloads(
    result: Result, setup: SetUp, args: Any, registered: int, display: float, waves: list[str]
) -> None:
    ids = [wave_id(n) for n in range(args.expiries)]
    if registered < len(ids):
        await _register(setup, ids[registered:], args.connections)
    if "live" in waves:
        print(f"  {setup.name} live wave: {len(ids):,} messages, D={display:g} s", file=sys.stderr)
        result.live = await live_wave(setup, ids, args.connections, display)
    if "restart" in waves:
        print(f"  {setup.name} restart wave: {len(ids):,} messages, D={display:g} s", file=sys.stderr)
        result.restart = await restart_wave(setup, ids, args.connections, display)


def _rate(times: list[float]) -> float | None:
    span = max(times) - min(times) if len(times) > 1 else 0.0
    return len(times) / span if span > 0 else None


def _spread(values: list[float]) -> dict[str, float]:
    return {f"p{q}": percentile(values, q) for q in (50, 99, 100)}


def display_seconds(result: Result, args: Any) -> float:
    """D for the expiry waves: submitting all N (at the submit workload's rate) takes well under D, and
    stopping the Dapr replicas (graceful, ~5 s each) fits before the first is due. Whole seconds: Dapr
    rounds reminder due times up to whole seconds."""
    if args.display_seconds:
        return float(args.display_seconds)
    rate = result.submit_summary().get("per_second") or (5000.0 if not result.replicas else 40.0)
    return float(
        math.ceil(1.5 * args.expiries / rate) + (10 + 15 * result.replicas if result.replicas else 10)
    )


# -- the run ---------------------------------------------------------------------------------------


def measure(name: str, replicas: int, args: Any, tmp: Path, workloads: set[str]) -> Result:
    """All chosen workloads on one set-up: the submit workload on one start of it, the rest on another."""
    result = Result(name, replicas)
    if "submit" in workloads:
        result.conditions.append(f"before the submit workload: {_quiet(args)}")
        setup = SetUp(name, replicas, tmp / f"{name}-submit", SERVER_CPU)
        try:
            submit_workload(result, setup, args, tmp)
        except Exception as exc:  # the other workloads and set-ups still run; the report names it
            _failed(result, setup, "submit", exc)
        finally:
            setup.stop()
    if workloads & {"activation", "expiries"}:
        result.conditions.append(f"before activation and expiries: {_quiet(args)}")
        display = display_seconds(result, args)
        setup = SetUp(name, replicas, tmp / f"{name}-expiries", SERVER_CPU)
        try:
            setup.start(display)
            result.affinity = result.affinity or setup.affinity()
            run_async(_activation_and_expiries(result, setup, args, display, workloads))
        except Exception as exc:
            _failed(result, setup, "activation/expiries", exc)
        finally:
            setup.stop()
    return result


def _failed(result: Result, setup: SetUp, workload: str, exc: Exception) -> None:
    print(f"  {result.name} {workload} failed: {exc!r}", file=sys.stderr)
    result.errors.append(f"{workload}: {exc!r}; server log: {setup.log_errors() or '-'}")


async def _activation_and_expiries(
    result: Result, setup: SetUp, args: Any, display: float, workloads: set[str]
) -> None:
    registered = 0
    if "activation" in workloads:
        result.activation = await activation_workload(setup, args.activation_rates)
        registered = sum(count for _, count in args.activation_rates)
    if "expiries" in workloads:
        waves = ["live"] + ([] if args.no_restart else ["restart"])
        await expiry_workloads(result, setup, args, registered, display, waves)


def _quiet(args: Any) -> str:
    return conditions() if args.no_wait else wait_for_quiet_machine(args.max_wait)


def projection(results: list[Result]) -> dict[str, Any] | None:
    """A linear projection of req/s on N machines from the CPU each request cost here (the set-up with the
    most replicas): N replicas of app + daprd, one core each, in front of one Redis and one scheduler."""
    dapr = next((r for r in sorted(results, key=lambda r: -r.replicas) if r.replicas and r.submit_runs), None)
    embedded = next((r for r in results if not r.replicas and r.submit_runs), None)
    if dapr is None:
        return None
    per = dapr.submit_summary()["cpu_ms_per_request"]
    replica_ms = per["app"] + per["daprd"]
    ceilings = {name: 1000 / per[role] for name, role in SHARED.items() if per[role] > 0}
    per_replica = 1000 / replica_ms
    embedded_each = 1000 / embedded.submit_summary()["cpu_ms_total"] if embedded else None
    rows = []
    for machines in (1, 2, 4, 8, 16, 32, 64, 128):
        bound, value = "replicas", machines * per_replica
        for name, ceiling in ceilings.items():
            if ceiling < value:
                bound, value = name, ceiling
        embedded_rate = machines * embedded_each if embedded_each else None
        rows.append({"machines": machines, "dapr": value, "bound": bound, "embedded": embedded_rate})
    return {
        "from": dapr.name,
        "cpu_ms_per_request": per,
        "replica_cpu_ms": replica_ms,
        "per_replica_core": per_replica,
        "ceilings": ceilings,
        "reached_at_machines": {name: ceiling / per_replica for name, ceiling in ceilings.items()},
        "redis_share": per["redis"] / sum(per.values()),
        "embedded_per_core": embedded_each,
        "rows": rows,
    }


# -- the report ------------------------------------------------------------------------------------


def _ms(value: float | None, fmt: str = ",.1f") -> str:
    return "-" if value is None else format(value, fmt)


def _triple(spread: dict[str, float], fmt: str = ",.0f") -> str:
    return " / ".join(_ms(spread.get(k), fmt) for k in ("p50", "p99", "p100")) if spread else "-"


def report(results: list[Result], args: Any, plan: dict[str, Any], proj: dict[str, Any] | None) -> None:
    print("## Embedded runtime vs Dapr (1 and 2 replicas)\n")
    print(f"`uv run python bench/dapr_compare.py {shlex.join(sys.argv[1:])}`\n")
    print(
        f"Every set-up runs on CPU {SERVER_CPU} alone: the embedded server, or for Dapr the app(s), "
        f"daprd(s), Redis, placement and scheduler, which share that one core. wrk and this script's client "
        f"run on CPU {LOAD_CPU}. Durability differs: the embedded runtime commits to SQLite with "
        'synchronous=FULL; Redis runs with appendonly no and save "" (nothing on disk), the scheduler '
        "keeps its reminders in its etcd on disk. Each workload starts its set-up afresh.\n"
    )
    for r in results:
        print(f"- {r.name}: CPUs allowed: {r.affinity}. {'; '.join(r.conditions)}")
        notes = list(r.errors)
        if r.restart.get("listing_errors"):
            failed = r.restart["listing_errors"]
            notes.append(f"restart wave: {failed} fleet listing polls failed: {r.restart['listing_error']}")
        for note in notes:
            print(f"  - **failed**: {note}")
    print()
    submit = [(r, r.submit_summary()) for r in results if r.submit_runs]
    if submit:
        print("### Submit\n")
        print(
            f'POST /api/v1/banners/{{id}}/message {{"text":"hello"}} to the next unused banner: wrk '
            f"-t{WRK_THREADS} -c{args.connections} --timeout 30s (with two replicas each thread sends to "
            f"one), {args.warmup:g} s warm-up then {args.runs} x {args.duration:g} s; medians of the runs. "
            f"Messages show {SUBMIT_MESSAGE_SECONDS} s. CPU: the set-up's processes' CPU time during the "
            "measured runs over the requests answered.\n"
        )
        header = ("set-up", "req/s", "p50 ms", "p99 ms", "non-2xx", "socket errors")
        header += ("CPU ms/req: app", "daprd", "Redis", "scheduler", "placement", "total", "CPUs busy")
        rows = []
        for r, s in submit:
            per = s["cpu_ms_per_request"]
            rows.append(
                (r.name, f"{s['per_second']:,.0f}", f"{s['p50_ms']:,.1f}", f"{s['p99_ms']:,.1f}")
                + (f"{s['non_2xx']:,}", f"{s['socket_errors']:,}")
                + tuple(f"{per[role]:.2f}" if r.replicas or role == "app" else "-" for role in ROLES)
                + (f"{s['cpu_ms_total']:.2f}", f"{s['cpus_busy']:.2f}")
            )
        print(table(header, rows))
        print()
        print(
            table(
                ("set-up", "run", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "non-2xx")
                + ("banners used", "CPU ms/req", "other CPUs"),
                [
                    (r.name, run.wrk.run, f"{run.wrk.requests:,}", f"{run.wrk.per_second:,.0f}")
                    + (f"{run.wrk.p50_ms:,.1f}", f"{run.wrk.p99_ms:,.1f}", f"{run.wrk.max_ms:,.1f}")
                    + (f"{run.wrk.non_2xx:,}", f"{run.wrk.ids_used:,}")
                    + (
                        f"{1000 * sum(run.cpu.values()) / max(run.wrk.requests, 1):.2f}",
                        f"{run.other_cpus:.2f}",
                    )
                    for r, _ in submit
                    for run in r.submit_runs
                ],
            )
        )
        print()
        print(
            "Banners: "
            + "; ".join(f"{r.name} {r.banners_registered}" for r, _ in submit)
            + ". On Dapr a banner registered within the last minute stays active (AirDisplay's actor idle "
            "timeout), so its submit "
            "finds the actor and its state in memory; the embedded runtime (2 s idle timeout) activates each "
            "banner from SQLite. Latency under a closed loop at saturation is about connections / req/s.\n"
        )
    activation = [r for r in results if r.activation]
    if activation:
        print("### Actor activation: registering never-used banners at a fixed rate\n")
        print(
            "`POST /api/v1/banners` of a new id activates a fresh actor (on Dapr: placement lookup, the SDK "
            "creates the actor, reads its empty state, saves it, writes the directory, publishes the event). "
            "Sent at a fixed rate whatever the answers (open loop, at most "
            f"{PACED_CONNECTIONS} connections per server); latency from each request's planned send time, so "
            "a set-up that cannot keep up shows its backlog. Client lag: how late this script sent.\n"
        )
        rows = [
            (r.name, f"{a['rate']:g}", f"{a['count']:,}", f"{a['achieved_per_second']:,.0f}")
            + tuple(f"{a[f'p{q}_ms']:,.1f}" for q in (50, 90, 99, 100))
            + (f"{a['non_201']:,}", f"{a['client_lag_p99_ms']:.1f}")
            for r in activation
            for a in r.activation
        ]
        published = PUBLISHED["activation_ms"]
        rows.append(
            ("Dapr's published figure", "500", "30,000", "500")
            + (f"{published['p50']}", f"{published['p90']}", f"{published['p99']}", "-", "0", "-")
        )
        print(
            table(
                ("set-up", "offered /s", "requests", "answered /s", "p50 ms", "p90 ms", "p99 ms", "max ms")
                + ("non-201", "client lag p99 ms"),
                rows,
            )
        )
        print(
            f"\nDapr's figure: {PUBLISHED['source']} (Dapr 1.17 on Kubernetes, 3 nodes of 4 cores, the "
            "actor in the Java SDK, sidecar limited to 0.5 vCPU); its actor does no state work.\n"
        )
    live = [r for r in results if r.live]
    if live:
        print("### Expiries: a live wave\n")
        print(
            "N messages submitted as fast as the set-up takes them (64 at once, this script's client), each "
            "showing D s; expiries seen on the WebSocket stream (`/api/v1/stream`, one connection per "
            f"{STREAM_BANNERS:,} banners, on the first replica). Lateness seen: receipt minus `expires_at`; "
            "turn: the event's `at` minus `expires_at`. The messages come due at the rate they were "
            "submitted, so expiries/s here cannot exceed the submit rate. CPU per expiry: the set-up's CPU "
            "from the end of submitting to the last expiry seen (idle background included) over the "
            "expiries.\n"
        )
        print(
            table(
                ("set-up", "messages", "D s", "submitted in s (/s)", "due window s", "ended before first due")
                + (
                    "expiries seen / 201s",
                    "expiries/s",
                    "lateness seen p50 / p99 / max ms",
                    "turn p50 / p99 / max ms",
                )
                + ("CPU ms per expiry",),
                [
                    (r.name, f"{w['count']:,}", f"{w['display_seconds']:g}")
                    + (
                        f"{w['submit_seconds']:.1f} ({w['submit_per_second']:,.0f})",
                        f"{w['due_window_s']:.1f}",
                    )
                    + ("yes" if w["submitting_ended_before_first_due"] else "NO",)
                    + (f"{w['expired_seen']:,} / {w['submit_statuses'].get(201, 0):,}",)
                    + (
                        _ms(w["expiries_per_second"], ",.0f"),
                        _triple(w["lateness_ms"]),
                        _triple(w["turn_lateness_ms"]),
                    )
                    + (f"{sum(w['cpu_ms_per_expiry'].values()):.2f}",)
                    for r in live
                    for w in [r.live]
                ],
            )
        )
        print()
    restart = [r for r in results if r.restart]
    if restart:
        print("### Expiries: all due at once (actors stopped, then started again)\n")
        print(
            "The same N messages again; right after the last submit the processes that run the actors stop "
            "(the embedded server; each replica's app and daprd, gracefully; Redis and the scheduler stay "
            "up) and start again once every message is overdue. On Dapr the scheduler holds the triggers "
            "it could not deliver and sends them when a daprd connects; the app's expiry sweep (every 5 s) "
            "backs them up. Time of each expiry: the banner's `updated_at` in the fleet listing after.\n"
        )
        rows = [
            (r.name, f"{w['count']:,}", f"{w['stop_seconds']:.1f}", f"{w['expired_before_stop']:,}")
            + (f"{w['behind_newest_s']:.1f} / {w['behind_oldest_s']:.1f}", f"{w['restart_to_ready_s']:.1f}")
            + (_ms(w["restart_to_first_expiry_s"], ".2f"), _ms(w["restart_to_all_free_s"], ".2f"))
            + (_ms(w["expiries_per_second"], ",.0f"), f"{w['still_showing']:,}")
            for r in restart
            for w in [r.restart]
        ]
        rows.append(
            ("Dapr's published figure", "100,000", "-", "-", "-", "-", "-", "-")
            + (f"{PUBLISHED['reminder_triggers_per_second']:,}", "-")
        )
        print(
            table(
                (
                    "set-up",
                    "messages",
                    "stop took s",
                    "expired before stop",
                    "overdue at start: newest / oldest s",
                )
                + ("start to ready s", "start to first expiry s", "start to all free s", "expiries/s")
                + ("still showing",),
                rows,
            )
        )
        print(
            "\nDapr's figure counts reminder triggers whose actor method does nothing; here each trigger "
            "is a full turn: activate the actor (state read from Redis), save, write the directory, publish. "
            "With few messages a fast drain finishes between two timestamps: expiries/s then means little "
            "(bench/expiries.py measures the embedded drain at 100,000 and more).\n"
        )
    if proj is not None:
        print("### What the CPU per request predicts for N machines\n")
        per, ceilings, reached = proj["cpu_ms_per_request"], proj["ceilings"], proj["reached_at_machines"]
        shared = "; ".join(
            f"{name} {per[role]:.3f} ms, so about {ceilings[name]:,.0f} req/s on its one core, reached at "
            f"{reached[name]:,.0f} machines"
            for name, role in SHARED.items()
            if name in ceilings
        )
        print(
            f"A linear projection, not a measurement. From {proj['from']}'s submit figures (CPU per request "
            f"above): a replica (app + daprd) costs {proj['replica_cpu_ms']:.2f} ms, so a core per replica "
            f"gives {proj['per_replica_core']:,.0f} req/s and N machines N times that, until a shared part "
            f"is full. Shared parts, each on a core of its own: {shared}. Redis is "
            f"{proj['redis_share']:.0%} of the CPU per request. Assumed: CPU per request does not change "
            "with N (loopback here, no network; calls between replicas in the share measured with 2; "
            "placement's CPU is heartbeats, not per request, and left out); one Redis, single-threaded (a "
            "Redis Cluster would split the state and the directory's sorted sets, which its script needs "
            "on one node); one scheduler (Dapr's HA mode runs 3 that divide the reminders; not modelled). "
            "The embedded runtime shares nothing: N servers are N separate fleets (a banner lives on one "
            f"server), {_ms(proj['embedded_per_core'], ',.0f')} req/s per core from its CPU per request.\n"
        )
        print(
            table(
                ("machines", "Dapr req/s (projected)", "bound by", "embedded req/s (N separate servers)"),
                [
                    (f"{row['machines']}", f"{row['dapr']:,.0f}", row["bound"], _ms(row["embedded"], ",.0f"))
                    for row in proj["rows"]
                ],
            )
        )
        print()
    print(table(("conditions", ""), [("at the start", plan["at_start"]), ("at the end", conditions())]))
    print()
    print(machine(dapr_versions().items()))


def _rates(text: str) -> list[tuple[float, int]]:
    """`500:1000,20:200` -> [(500.0, 1000), (20.0, 200)]: rate per second and number of requests."""
    pairs = []
    for item in text.split(","):
        rate, _, count = item.partition(":")
        pairs.append((float(rate), int(count)))
    return pairs


QUICK = {
    "embedded_banners": 20_000,
    "dapr_banners_first": 100,
    "runs": 1,
    "duration": 3.0,
    "warmup": 1.0,
    "activation_rates": [(500.0, 200), (20.0, 40)],
    "expiries": 200,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", help=f"set-ups ({', '.join(SETUPS)}) and/or workloads ({', '.join(WORKLOADS)})"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small counts: a smoke run (figures mean little)"
    )
    parser.add_argument("--connections", type=int, default=64, help="wrk connections, for every set-up")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured submit run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of submit warm-up per set-up")
    parser.add_argument("--runs", type=int, default=3, help="measured submit runs per set-up")
    parser.add_argument(
        "--embedded-banners", type=int, default=250_000, help="seeded for the embedded submit"
    )
    parser.add_argument("--dapr-banners-first", type=int, default=400, help="registered before the warm-up")
    parser.add_argument(
        "--dapr-banners-max", type=int, default=20_000, help="most registered per Dapr set-up"
    )
    parser.add_argument(
        "--activation-rates",
        type=_rates,
        default=[(500.0, 1000), (20.0, 200)],
        help="rate:requests pairs for the activation workload (default 500:1000,20:200)",
    )
    parser.add_argument("--expiries", type=int, default=1000, help="N messages per expiry wave")
    parser.add_argument("--display-seconds", type=float, default=0.0, help="D of the waves; 0: from the rate")
    parser.add_argument("--no-restart", action="store_true", help="skip the wave due while stopped")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine first")
    parser.add_argument("--max-wait", type=float, default=600.0, help="longest wait for a quiet machine (s)")
    parser.add_argument("--json", "--out", dest="json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    chosen = set(args.only.split(",")) if args.only else set()
    unknown = chosen - set(SETUPS) - set(WORKLOADS)
    if unknown:
        sys.exit(f"unknown in --only: {', '.join(sorted(unknown))}")
    setups = [name for name in SETUPS if name in chosen] or list(SETUPS)
    workloads = {w for w in WORKLOADS if w in chosen} or set(WORKLOADS)
    if missing := missing_tools():
        sys.exit(f"missing: {', '.join(missing)}")
    stop_on_signals()
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {LOAD_CPU})  # this script is the client, beside wrk
    plan = {"at_start": _quiet(args), "setups": setups, "workloads": sorted(workloads)}
    tmp = Path(tempfile.mkdtemp(prefix="airdisplay-dapr-compare-"))
    results = []
    try:
        for name in setups:
            print(f"== {name}", file=sys.stderr)
            results.append(measure(name, SETUPS[name], args, tmp, workloads))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    proj = projection(results)
    report(results, args, plan, proj)
    write_json(
        args.json,
        "dapr_compare",
        {
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "setups": [
                {
                    "name": r.name,
                    "replicas": r.replicas,
                    "affinity": r.affinity,
                    "conditions": r.conditions,
                    "banners": r.banners_registered,
                    "submit": r.submit_summary(),
                    "submit_runs": [
                        {**asdict(run.wrk), "cpu": run.cpu, "other_cpus": run.other_cpus}
                        for run in r.submit_runs
                    ],
                    "activation": r.activation,
                    "live_wave": r.live,
                    "restart_wave": r.restart,
                    "errors": r.errors,
                }
                for r in results
            ],
            "projection": proj,
            "published": PUBLISHED,
            "conditions": {"at_start": plan["at_start"], "at_end": conditions()},
        },
        dapr_versions().items(),
    )


if __name__ == "__main__":
    main()
