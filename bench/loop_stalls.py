"""Event-loop stalls under a sustained stream of submits to distinct banners, and what causes them.

In-process on `EmbeddedRuntime`, with the garbage-collector settings `airdisplay serve` runs with: seeds
the banners, then 64 callers each submit to the next unused banner and pause 4 ms (about the pace of HTTP
clients), so every submit activates an actor that stays in memory for `--idle-seconds`. A watcher task
sleeps 1 ms at a time and records every wake-up later than 20 ms as a stall; a `gc.callbacks` hook
records every collection over 10 ms by generation. Reports submits/s, submit latency p50/p99/max, the
stalls with the actors in memory at the time, and the collections.

    uv run python bench/loop_stalls.py [--banners 720000 --idle-seconds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _fleet import banner_id, run_async, seed_fleet
from _report import conditions, machine, percentile, table, wait_for_quiet_machine, write_json
from airdisplay.actors import DEFAULT_IDLE_TIMEOUT
from airdisplay.cli import tune_garbage_collector
from airdisplay.domain import BannerRules
from airdisplay.runtimes import EmbeddedRuntime

CALLERS = 64
#: A caller's pause between submits: 64 callers then offer ~8,000 submits/s, what one server takes.
PAUSE_SECONDS = 0.004
WATCH_SECONDS = 0.001
STALL_SECONDS = 0.020
SLOW_GC_SECONDS = 0.010


class Watch:
    """Stalls of the event loop and slow collections, timed from the start of the submits."""

    def __init__(self, runtime: EmbeddedRuntime) -> None:
        self.runtime = runtime
        self.started = time.perf_counter()
        self.stalls: list[tuple[float, float, int]] = []  # (s since start, ms, actors in memory)
        self.collections: list[tuple[int, float]] = []  # (generation, ms)
        self._gc_started = 0.0

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        took = time.perf_counter() - self._gc_started
        if took > SLOW_GC_SECONDS:
            self.collections.append((info["generation"], took * 1000))

    async def watch_loop(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(WATCH_SECONDS)
            late = time.perf_counter() - before - WATCH_SECONDS
            if late > STALL_SECONDS:
                self.stalls.append((before - self.started, late * 1000, self.runtime.host.active_count))


async def run(args: argparse.Namespace, data_dir: Path) -> tuple[float, list[float], Watch]:
    print(f"seeding {args.banners:,} banners ...", file=sys.stderr)
    await seed_fleet(data_dir, args.banners, progress=False)
    runtime = EmbeddedRuntime(data_dir, BannerRules(display_seconds=3600), idle_timeout=args.idle_seconds)
    await runtime.start()
    tune_garbage_collector()  # after seeding: the settings `airdisplay serve` runs with (cli/_uvicorn.py)
    watch = Watch(runtime)
    gc.callbacks.append(watch.on_gc)
    watcher = asyncio.create_task(watch.watch_loop())
    latencies: list[float] = []
    numbers = iter(range(args.banners))

    async def caller() -> None:
        for number in numbers:
            started = time.perf_counter()
            await runtime.submit_message(banner_id(number), "hello")
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(PAUSE_SECONDS)

    print(f"submitting to {args.banners:,} banners ...", file=sys.stderr)
    await asyncio.gather(*(caller() for _ in range(CALLERS)))
    seconds = time.perf_counter() - watch.started
    watcher.cancel()
    gc.callbacks.remove(watch.on_gc)
    await runtime.stop()
    return seconds, latencies, watch


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--banners", type=int, default=720_000, help="banners, one submit each")
    parser.add_argument(
        "--idle-seconds", type=float, default=DEFAULT_IDLE_TIMEOUT, help="the runtime's idle timeout"
    )
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine first")
    parser.add_argument("--max-wait", type=float, default=600.0, help="longest wait for a quiet machine (s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args()
    before = conditions() if args.no_wait else wait_for_quiet_machine(args.max_wait)
    tmp = Path(tempfile.mkdtemp(prefix="airdisplay-bench-"))
    try:
        seconds, latencies, watch = run_async(run(args, tmp / "data"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    by_generation = Counter(generation for generation, _ in watch.collections)
    print(
        f"## Event-loop stalls: {args.banners:,} submits to distinct banners, "
        f"idle timeout {args.idle_seconds:g} s\n"
    )
    print(
        f"At the start: {before}. {CALLERS} callers, {PAUSE_SECONDS * 1000:g} ms pause after each submit.\n"
    )
    print(
        table(
            ("measure", "value"),
            [
                ("submits/s", f"{len(ms) / seconds:,.0f} over {seconds:.0f} s"),
                (
                    "submit latency p50 / p99 / max",
                    f"{percentile(ms, 50):.1f} / {percentile(ms, 99):.1f} / {ms[-1]:.1f} ms",
                ),
                (
                    f"loop stalls > {STALL_SECONDS * 1000:g} ms",
                    f"{len(watch.stalls)}, longest {max((s[1] for s in watch.stalls), default=0):.0f} ms",
                ),
            ]
            + [
                (
                    f"collections of generation {generation} > {SLOW_GC_SECONDS * 1000:g} ms",
                    f"{by_generation[generation]}, longest "
                    f"{max(took for g, took in watch.collections if g == generation):.0f} ms",
                )
                for generation in sorted(by_generation)
            ],
        )
    )
    print()
    print(
        table(
            ("s since start", "stall ms", "actors in memory"),
            [(f"{at:.1f}", f"{took:.0f}", f"{actors:,}") for at, took, actors in watch.stalls],
        )
    )
    print()
    print(machine())
    write_json(
        args.json,
        "loop_stalls",
        {
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "submits_per_second": len(ms) / seconds,
            "latency_ms": {"p50": percentile(ms, 50), "p99": percentile(ms, 99), "max": ms[-1]},
            "stalls": watch.stalls,
            "collections": watch.collections,
            "conditions": {"at_start": before},
        },
    )


if __name__ == "__main__":
    main()
