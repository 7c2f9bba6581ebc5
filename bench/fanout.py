"""Submit-to-delivery latency and deliveries/s with 1 and 1,000 WebSocket clients watching.

The server runs pinned to CPU 0; this process (the submitter and every WebSocket client, asyncio with the
`websockets` library) is pinned to CPU 1. Every client subscribes to the same 10 banners, so each submit is
delivered to every client. A submit's latency, per client, is from just before its POST to that client's
receipt of the `message_shown` frame (one clock: same process). Expiry frames count as deliveries too.

    uv run python bench/fanout.py                    # clients 1 and 1000
    uv run python bench/fanout.py --clients 1,100,1000 --rate 10 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import httpx
import websockets

from _fleet import NO_SUBMIT_LIMIT, ServerProcess, airdisplay_command, free_port, pinned
from _report import machine, percentile, rss_mb, stop_on_signals, table, wait_for_quiet_machine, write_json

BANNERS = 10


async def run_load(base_url: str, clients: int, rate: float, seconds: float) -> dict[str, float]:
    ids = [f"fan-{i}" for i in range(BANNERS)]
    sent: dict[str, float] = {}
    latencies: list[float] = []
    delivered = 0
    ws_url = base_url.replace("http://", "ws://") + "/api/v1/stream?banners=" + ",".join(ids)

    async def watch(ready: asyncio.Event, counter: list[int]) -> None:
        nonlocal delivered
        async with websockets.connect(ws_url, max_size=2**22, compression=None) as ws:
            counter[0] += 1
            if counter[0] == clients:
                ready.set()
            async for raw in ws:
                now = time.perf_counter()
                delivered += 1
                if '"message_shown"' in raw:
                    text = json.loads(raw)["banner"]["message"]["text"]
                    started = sent.get(text)
                    if started is not None:
                        latencies.append(now - started)

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        for banner_id in ids:
            await http.post("/api/v1/banners", json={"id": banner_id, "name": banner_id})
        ready, counter = asyncio.Event(), [0]
        watchers = []
        for _ in range(clients):
            watchers.append(asyncio.create_task(watch(ready, counter)))
            await asyncio.sleep(0.002)  # a steady connect rate, not a thundering herd
        await asyncio.wait_for(ready.wait(), 120)
        await asyncio.sleep(1.0)  # snapshots delivered
        delivered = 0
        started_at = time.perf_counter()
        seq = 0
        while time.perf_counter() - started_at < seconds:
            banner_id = ids[seq % BANNERS]
            text = f"t{seq}"
            await http.delete(f"/api/v1/banners/{banner_id}/message")  # free it whatever the expiry timing
            sent[text] = time.perf_counter()
            response = await http.post(f"/api/v1/banners/{banner_id}/message", json={"text": text})
            if response.status_code != 201:
                sent.pop(text, None)
            seq += 1
            await asyncio.sleep(max(0.0, started_at + seq / rate - time.perf_counter()))
        await asyncio.sleep(1.0)  # let the last frames arrive
        elapsed = time.perf_counter() - started_at
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    expected = len(sent) * clients
    return {
        "submits": len(sent),
        "p50_ms": percentile(latencies, 50) * 1000 if latencies else float("nan"),
        "p99_ms": percentile(latencies, 99) * 1000 if latencies else float("nan"),
        "max_ms": max(latencies) * 1000 if latencies else float("nan"),
        "deliveries_s": delivered / elapsed,
        "shown_received": len(latencies),
        "shown_expected": expected,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="1,1000", help="comma-separated client counts")
    parser.add_argument("--rate", type=float, default=10.0, help="submits per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args()
    stop_on_signals()  # servers are stopped in `finally` on SIGINT/SIGTERM too
    if not args.no_wait:
        print(wait_for_quiet_machine())
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    rows = []
    figures: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="adfan-") as tmp:
        for clients in [int(c) for c in args.clients.split(",")]:
            port = free_port()
            data = Path(tmp) / f"c{clients}"
            server = ServerProcess(
                f"airdisplay ({clients} clients)",
                pinned(
                    0,
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
                    ],
                ),
                port,
                Path(tmp) / f"server-{clients}.log",
            )
            server.start()
            try:
                server.wait_ready()
                result = asyncio.run(run_load(server.base_url, clients, args.rate, args.seconds))
                rss = rss_mb(server.pid)
            finally:
                server.stop()
            figures.append({"clients": clients, **result, "server_rss_mb": rss})
            rows.append(
                [
                    clients,
                    result["submits"],
                    f"{result['shown_received']}/{result['shown_expected']}",
                    f"{result['p50_ms']:.1f}",
                    f"{result['p99_ms']:.1f}",
                    f"{result['max_ms']:.1f}",
                    f"{result['deliveries_s']:.0f}",
                    f"{rss:.0f}",
                ]
            )
    print(
        f"\nFan-out: {args.rate:g} submits/s for {args.seconds:g} s, "
        f"every client watching the same {BANNERS} banners\n"
    )
    print(
        table(
            [
                "clients",
                "submits",
                "shown frames received/expected",
                "p50 ms",
                "p99 ms",
                "max ms",
                "deliveries/s",
                "server RSS MB",
            ],
            rows,
        )
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
