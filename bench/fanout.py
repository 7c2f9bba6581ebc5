"""Submit-to-delivery latency and deliveries/s with 1 and 1,000 WebSocket clients watching.

The server runs pinned to CPU 0. The WebSocket clients (bench/_ws_reader.py, a minimal asyncio reader, or
the `websockets` library with `--client websockets`) are spread over `--client-procs` processes, and they
and this process (the submitter) are pinned to CPU 1. Every client subscribes to the same banners (one per
submit by default), so each submit is delivered to every client. A submit's latency, per client, is from
just before its POST to that client's receipt of the `message_shown` frame; both ends read CLOCK_MONOTONIC
(`time.monotonic_ns()`), one system-wide clock on Linux, so times taken in different processes compare.
Every frame received counts as a delivery. The CPU time of the server and of the client processes during
the measurement shows which side was the bottleneck.

    uv run python bench/fanout.py                    # clients 1 and 1000
    uv run python bench/fanout.py --clients 1,100,1000 --rate 10 --seconds 10 --client-procs 4
    uv run python bench/fanout.py --banners 10       # the earlier workload: a DELETE before most submits
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import resource
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import websockets

from _fleet import NO_SUBMIT_LIMIT, ServerProcess, airdisplay_command, free_port, pinned, run_async
from _report import (
    ForeignLoad,
    cpu_seconds,
    machine,
    percentile,
    rss_mb,
    stop_on_signals,
    table,
    wait_for_quiet_machine,
    write_json,
)
from _ws_reader import open_reader

#: Most banners one stream may watch (airdisplay.realtime.MAX_BANNERS_PER_CONNECTION).
MAX_BANNERS = 1000
SERVER_CPU = 0
CLIENT_CPU = 1
#: Client processes by default. All share CPU 1, so more processes add no CPU; they shorten each event
#: loop's queue of frames (one loop read all 1,000 frames of a submit in turn). See bench/README.md.
CLIENT_PROCS = 4
#: The WebSocket client. See bench/_ws_reader.py for why not the websockets library by default.
CLIENT = "raw"
#: Seconds between two connects of one client process, times the processes: 500 connects/s in all, a
#: steady rate rather than a thundering herd.
CONNECT_INTERVAL = 0.002


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def client_process(
    ws_url: str, clients: int, interval: float, cpu: int | None, kind: str, conn: Connection
) -> None:
    """One client process: `clients` WebSocket subscribers; obeys "start" and "stop" sent over `conn`."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})
    try:
        run_async(_watch_all(ws_url, clients, interval, kind, conn))
    except Exception as exc:  # the parent reports it; it waits for an answer on `conn`
        conn.send({"error": f"{type(exc).__name__}: {exc}"})


def _shown_text(frame: str | bytes) -> str:
    message: str = json.loads(frame)["banner"]["message"]["text"]
    return message


async def _watch_all(ws_url: str, clients: int, interval: float, kind: str, conn: Connection) -> None:
    received: list[tuple[str | bytes, int]] = []  # (frame, CLOCK_MONOTONIC ns at receipt); parsed later
    counting = False
    delivered = 0
    connected = 0
    ready = asyncio.Event()

    def record(frame: str | bytes, now: int) -> None:
        nonlocal delivered
        if counting:
            delivered += 1
            if ('"message_shown"' if isinstance(frame, str) else b'"message_shown"') in frame:
                received.append((frame, now))

    def connected_one() -> None:
        nonlocal connected
        connected += 1
        if connected == clients:
            ready.set()

    async def watch_library() -> None:
        async with websockets.connect(ws_url, max_size=2**22, compression=None) as ws:
            connected_one()
            async for raw in ws:
                record(raw, time.monotonic_ns())

    async def watch_raw() -> None:
        reader = await open_reader(ws_url, record)
        connected_one()
        await reader.closed

    watch = watch_raw if kind == "raw" else watch_library
    watchers = []
    for _ in range(clients):
        watchers.append(asyncio.create_task(watch()))
        await asyncio.sleep(interval)
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([waiter, *watchers], timeout=120, return_when=asyncio.FIRST_COMPLETED)
    failed = next((t for t in watchers if t.done()), None)
    if failed is not None or not ready.is_set():
        reason = repr(failed.exception()) if failed is not None else f"only {connected} connected in 120 s"
        raise RuntimeError(f"clients did not all connect: {reason}")
    conn.send({"ready": clients})
    assert await asyncio.to_thread(conn.recv) == "start"
    counting = True
    cpu0, wall0 = _own_cpu_seconds(), time.monotonic()
    assert await asyncio.to_thread(conn.recv) == "stop"
    counting = False
    cpu, wall = _own_cpu_seconds() - cpu0, time.monotonic() - wall0
    lost = sum(1 for t in watchers if t.done())  # a watcher ends only if its connection closed
    for task in watchers:
        task.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    shown = [(_shown_text(frame), at) for frame, at in received]
    conn.send({"received": shown, "delivered": delivered, "cpu_s": cpu, "wall_s": wall, "closed_early": lost})


def split(clients: int, procs: int) -> list[int]:
    """`clients` spread as evenly as possible over at most `procs` processes."""
    procs = max(1, min(procs, clients))
    return [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]


def run_load(server: ServerProcess, clients: int, args: argparse.Namespace) -> dict[str, Any]:
    ids = [f"fan-{i}" for i in range(args.banners)]
    ws_url = server.base_url.replace("http://", "ws://") + "/api/v1/stream?banners=" + ",".join(ids)
    shares = split(clients, args.client_procs)
    context = multiprocessing.get_context("spawn")  # no copy of this process's state; clean event loops
    cpu = CLIENT_CPU if (os.cpu_count() or 1) > 1 else None
    pipes, procs = [], []
    sent: dict[str, int] = {}  # message text -> CLOCK_MONOTONIC ns just before its POST
    clears = 0
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        for banner_id in ids:
            http.post("/api/v1/banners", json={"id": banner_id, "name": banner_id})
        try:
            for share in shares:
                parent_end, child_end = context.Pipe()
                interval = CONNECT_INTERVAL * len(shares)
                proc = context.Process(
                    target=client_process, args=(ws_url, share, interval, cpu, args.client, child_end)
                )
                proc.start()
                pipes.append(parent_end)
                procs.append(proc)
            for pipe in pipes:
                if not pipe.poll(180):
                    raise TimeoutError("a client process did not report ready in 180 s")
                answer = pipe.recv()
                if "error" in answer:
                    raise RuntimeError(f"client process: {answer['error']}")
            time.sleep(1.0)  # snapshots delivered
            server_cpu0, own_cpu0 = cpu_seconds(server.pid), _own_cpu_seconds()
            started = time.monotonic()
            for pipe in pipes:
                pipe.send("start")
            seq = 0
            while time.monotonic() - started < args.seconds:
                banner_id = ids[seq % len(ids)]
                text = f"t{seq}"
                if seq >= len(ids):
                    http.delete(f"/api/v1/banners/{banner_id}/message")  # free it whatever the expiry timing
                    clears += 1
                sent[text] = time.monotonic_ns()
                response = http.post(f"/api/v1/banners/{banner_id}/message", json={"text": text})
                if response.status_code != 201:
                    sent.pop(text, None)
                seq += 1
                time.sleep(max(0.0, started + seq / args.rate - time.monotonic()))
            time.sleep(1.0)  # let the last frames arrive
            for pipe in pipes:
                pipe.send("stop")
            elapsed = time.monotonic() - started
            server_cpu = cpu_seconds(server.pid) - server_cpu0
            submitter_cpu = _own_cpu_seconds() - own_cpu0
            answers = [pipe.recv() if pipe.poll(60) else {"error": "no answer in 60 s"} for pipe in pipes]
        finally:
            for proc in procs:
                proc.join(30)
                if proc.is_alive():
                    proc.kill()
    errors = [a["error"] for a in answers if "error" in a]
    if errors:
        raise RuntimeError(f"client process: {errors[0]}")
    latencies = [
        (at - sent[text]) / 1e6 for answer in answers for text, at in answer["received"] if text in sent
    ]
    clients_cpu = [answer["cpu_s"] / answer["wall_s"] for answer in answers]
    return {
        "submits": len(sent),
        "clears_before_submit": clears,
        "p50_ms": percentile(latencies, 50) if latencies else float("nan"),
        "p99_ms": percentile(latencies, 99) if latencies else float("nan"),
        "max_ms": max(latencies) if latencies else float("nan"),
        "deliveries_s": sum(answer["delivered"] / answer["wall_s"] for answer in answers),
        "shown_received": len(latencies),
        "shown_expected": len(sent) * clients,
        "closed_early": sum(answer["closed_early"] for answer in answers),
        "client_procs": len(shares),
        "client_cpus": sum(clients_cpu),
        "client_cpus_per_proc": clients_cpu,
        "submitter_cpus": submitter_cpu / elapsed,
        "server_cpus": server_cpu / elapsed,
        "seconds": elapsed,
    }


def serve_argv(port: int, data: Path, clients: int) -> list[str]:
    return pinned(
        SERVER_CPU,
        [
            *airdisplay_command(),
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data),
            "--message-seconds",
            "3600",
            *NO_SUBMIT_LIMIT,
            # Every client connects from 127.0.0.1; the per-address stream quota would refuse most of them.
            "--max-streams-per-client",
            str(clients + 1),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="1,1000", help="comma-separated client counts")
    parser.add_argument("--rate", type=float, default=10.0, help="submits per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--banners",
        type=int,
        help="banners every client watches (default: one per submit, rate x seconds, at most 1,000)",
    )
    parser.add_argument(
        "--client-procs",
        type=int,
        default=CLIENT_PROCS,
        help=f"processes the WebSocket clients are spread over, all on CPU {CLIENT_CPU} (%(default)s)",
    )
    parser.add_argument(
        "--client",
        choices=("raw", "websockets"),
        default=CLIENT,
        help="raw: bench/_ws_reader.py, a minimal reader; websockets: the websockets library (%(default)s)",
    )
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args()
    # Each submit goes to the next banner. A banner used before in the run must be cleared with a DELETE
    # first (messages show for an hour), and that clear is fanned out to every client just ahead of the
    # submit measured: one banner per submit keeps the measured delivery free of that extra burst.
    args.banners = args.banners or min(MAX_BANNERS, math.ceil(args.rate * args.seconds))
    stop_on_signals()  # servers are stopped in `finally` on SIGINT/SIGTERM too
    before = "" if args.no_wait else wait_for_quiet_machine()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {CLIENT_CPU})
    rows = []
    figures: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="adfan-") as tmp:
        for clients in [int(c) for c in args.clients.split(",")]:
            port = free_port()
            data = Path(tmp) / f"c{clients}"
            log = Path(tmp) / f"server-{clients}.log"
            server = ServerProcess(
                f"airdisplay ({clients} clients)", serve_argv(port, data, clients), port, log
            )
            server.start()
            others = ForeignLoad([server.pid])
            try:
                server.wait_ready()
                result = run_load(server, clients, args)
                rss = rss_mb(server.pid)
                other_cpus = others.cpus()
            finally:
                server.stop()
            figures.append({"clients": clients, **result, "server_rss_mb": rss, "other_cpus": other_cpus})
            rows.append(
                [
                    clients,
                    result["submits"],
                    result["clears_before_submit"],
                    f"{result['shown_received']}/{result['shown_expected']}",
                    f"{result['p50_ms']:.1f}",
                    f"{result['p99_ms']:.1f}",
                    f"{result['max_ms']:.1f}",
                    f"{result['deliveries_s']:.0f}",
                    f"{rss:.0f}",
                    f"{result['server_cpus']:.2f}",
                    f"{result['client_procs']} / {result['client_cpus']:.2f}",
                    f"{other_cpus:.2f}",
                ]
            )
    print(
        f"\nFan-out: {args.rate:g} submits/s for {args.seconds:g} s, every client watching the same "
        f"{args.banners} banners; server on CPU {SERVER_CPU}, {args.client} clients in up to "
        f"{args.client_procs} processes and the submitter on CPU {CLIENT_CPU}"
        f"{'; ' + before if before else ''}\n"
    )
    print(
        table(
            [
                "clients",
                "submits",
                "DELETEs before a submit",
                "shown frames received/expected",
                "p50 ms",
                "p99 ms",
                "max ms",
                "deliveries/s",
                "server RSS MB",
                "server CPUs",
                "client procs / their CPUs",
                "other CPUs",
            ],
            rows,
        )
    )
    print(
        "\nCPUs: CPU time during the measurement (submits and 1 s after) over its wall time; the server has "
        f"CPU {SERVER_CPU} to itself, clients and submitter share CPU {CLIENT_CPU}; other: the rest of the "
        "machine (other processes, kernel, loopback networking)."
    )
    print()
    print(machine())
    write_json(
        args.json,
        "fanout",
        {"config": {k: v for k, v in vars(args).items() if k != "json"}, "rows": figures},
    )


if __name__ == "__main__":
    main()
