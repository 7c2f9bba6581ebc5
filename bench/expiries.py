"""Time for a large wave of message expiries (default 100,000) on the embedded runtime, in-process.

Seeds the banners, submits a message to every one (many at once) with display_seconds=D so that they all
come due within one short window, and follows the MESSAGE_EXPIRED changes through `add_listener`:
time from the first due expiry until every banner is free, expiries/s, lateness, memory, and how many
reminders the scheduler holds in memory meanwhile. Then the same wave once more, but with the runtime
stopped before it comes due and started again after: every expiry is overdue at start-up (the messages
of that wave are submitted with the runtime's clock held still, so none comes due before the stop).

    uv run python bench/expiries.py [--banners 100000 --display-seconds 30]
    uv run python bench/expiries.py --banners 1000000 --display-seconds 300 --queued 1000 --no-restart

`--queued N`: N of the banners, spread evenly through the wave's submit order (so their messages end at
points spread over the wave), get a full queue of bookings (BannerRules.queue_length) right after their
message; when a message ends, its turn starts the first booking, while the wave's expiries come due: how
late each booking starts after its slot began (issue 15: p99 within 100 ms), as the committed change's
time (the turn) and as seen by a listener (after the commit). The wave ends when every banner of the wave
is free and every queue's first booking started; the rest of each queue runs after the wave, unloaded,
and is not waited for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _fleet import SEED_CONCURRENCY, SeedResult, banner_id, run_async, seed_fleet
from _report import (
    ForeignLoad,
    conditions,
    machine,
    percentile,
    rss_mb,
    table,
    wait_for_quiet_machine,
    write_json,
)
from airdisplay.cli import tune_garbage_collector
from airdisplay.domain import BannerChanged, BannerRules, ChangeKind
from airdisplay.runtimes import EmbeddedRuntime

SAMPLE_SECONDS = 0.25


@dataclass
class Wave:
    """One wave of expiries: when each message was due and when its expiry was seen."""

    name: str
    count: int
    due: dict[str, float] = field(default_factory=dict)
    turn_at: list[float] = field(default_factory=list)  # change.at: when the expiry turn ran
    seen_at: list[float] = field(default_factory=list)  # wall clock in the listener: after the commit
    lateness: list[float] = field(default_factory=list)  # seen_at - expires_at
    turn_lateness: list[float] = field(default_factory=list)  # change.at - expires_at
    samples: list[tuple[float, int, int, int, float]] = field(default_factory=list)
    submit_seconds: float = 0.0
    submit_started: float = 0.0
    submit_ended: float = 0.0
    started_at: float = 0.0  # restart wave: when the runtime was started again
    done: asyncio.Event = field(default_factory=asyncio.Event)
    #: Banners with a queue of bookings (`--queued`): their bookings' ids, and each switch's lateness
    #: (turn, seen) in seconds with when it happened.
    booked: set[str] = field(default_factory=set)
    switches: list[tuple[float, float, float]] = field(default_factory=list)
    queued_done: asyncio.Event = field(default_factory=asyncio.Event)
    queued_expected: int = 0
    #: (generation, seconds) of each garbage collection while the expiries ran: full collections walk
    #: every object in the process, and their pauses show up in the lateness.
    gc_pauses: list[tuple[int, float]] = field(default_factory=list)
    _gc_started: float = 0.0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pauses.append((info["generation"], time.perf_counter() - self._gc_started))

    def follow_gc(self, on: bool) -> None:
        if on:
            gc.callbacks.append(self._on_gc)
        elif self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def on_change(self, change: BannerChanged) -> None:
        if change.kind is ChangeKind.MESSAGE_SHOWN and self.booked:
            message = change.banner.message if change.banner is not None else None
            if message is not None and message.id in self.booked:
                seen = time.time()
                start = message.shown_at.timestamp()
                self.switches.append((seen, change.at.timestamp() - start, seen - start))
                if len(self.switches) >= self.queued_expected:  # each queue's first booking started
                    self.queued_done.set()
            return
        if change.kind is not ChangeKind.MESSAGE_EXPIRED:
            return
        now = time.time()
        due = self.due.get(change.banner_id)
        if due is None:
            return
        at = change.at.timestamp()
        self.turn_at.append(at)
        self.seen_at.append(now)
        self.lateness.append(now - due)
        self.turn_lateness.append(at - due)
        if len(self.seen_at) >= self.count:
            self.done.set()


async def submit_all(runtime: EmbeddedRuntime, wave: Wave, queued: int = 0, queue_length: int = 0) -> None:
    """Submit to the wave's banners; with `queued`, every k-th banner of the submit order instead gets its
    message and a full queue of `queue_length` bookings (not part of the wave)."""
    total = wave.count + queued
    every = total // queued if queued else 0
    numbers = iter(range(total))

    async def fill(number: int) -> None:
        await runtime.submit_message(banner_id(number), "first")
        for i in range(queue_length):
            outcome = await runtime.book(banner_id(number), f"booked {i}", by="bench")
            assert outcome.shown is None, "the banner was free: the queue would not be full"
            wave.booked.add(outcome.booking_id)
        wave.queued_expected += 1

    async def worker() -> None:
        for number in numbers:
            if every and number % every == 0 and number // every < queued:
                await fill(number)
                continue
            outcome = await runtime.submit_message(banner_id(number), "hello")
            message = outcome.banner.message
            assert message is not None
            wave.due[outcome.banner.id] = message.expires_at.timestamp()

    wave.submit_started = time.time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(SEED_CONCURRENCY)))
    wave.submit_seconds = time.perf_counter() - started
    wave.submit_ended = time.time()


async def sample(runtime: EmbeddedRuntime, wave: Wave) -> None:
    while True:
        wave.samples.append(
            (
                time.time(),
                runtime.host.reminders_in_memory,
                runtime.host.active_count,
                len(wave.seen_at),
                rss_mb(),
            )
        )
        await asyncio.sleep(SAMPLE_SECONDS)


async def wait_done(wave: Wave, limit: float) -> None:
    try:
        await asyncio.wait_for(wave.done.wait(), limit)
    except TimeoutError:
        print(f"  {wave.name}: only {len(wave.seen_at):,} of {wave.count:,} expired in time", file=sys.stderr)


async def live_wave(
    data_dir: Path, count: int, display_seconds: float, limit: float, queued: int = 0
) -> Wave:
    """Submit to every banner, then watch them all expire while the runtime keeps running. With `queued`,
    that many banners first get a full queue of bookings each, and are not part of the wave."""
    wave = Wave("live", count - queued)
    rules = BannerRules(display_seconds=display_seconds)
    runtime = EmbeddedRuntime(data_dir, rules)
    runtime.add_listener(wave.on_change)
    await runtime.start()
    sampler = asyncio.create_task(sample(runtime, wave))
    print(
        f"live wave: submitting {wave.count:,} messages, {queued:,} full queues among them ...",
        file=sys.stderr,
    )
    await submit_all(runtime, wave, queued, rules.queue_length)
    print(f"  submitted in {wave.submit_seconds:.1f} s; waiting for the expiries ...", file=sys.stderr)
    wave.follow_gc(True)
    await wait_done(wave, max(wave.due.values()) - time.time() + limit)
    if queued:  # the first booking of each queue starts within the wave
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wave.queued_done.wait(), limit)
    wave.follow_gc(False)
    await asyncio.sleep(2 * SAMPLE_SECONDS)  # a sample or two after the last expiry
    sampler.cancel()
    await runtime.stop()
    return wave


async def restart_wave(data_dir: Path, count: int, display_seconds: float, limit: float) -> Wave:
    """Submit to every banner, stop before any message is due, start again once all are overdue.

    The messages are submitted on a runtime whose clock stands still at the wave's start, so all of them
    are due at that instant plus D however long submitting takes, and none comes due before the stop.
    The runtime started again reads the real clock.
    """
    wave = Wave("after restart", count)
    held_at = time.time()
    rules = BannerRules(display_seconds=display_seconds)
    runtime = EmbeddedRuntime(data_dir, rules, clock=lambda: held_at)
    await runtime.start()
    print(f"restart wave: submitting {count:,} messages (D={display_seconds:g} s) ...", file=sys.stderr)
    await submit_all(runtime, wave)
    await runtime.stop()
    pause = max(wave.due.values()) + 1.0 - time.time()
    print(f"  stopped; starting again in {max(pause, 0.0):.1f} s when all are overdue ...", file=sys.stderr)
    await asyncio.sleep(max(pause, 0.0))
    runtime = EmbeddedRuntime(data_dir, rules)
    runtime.add_listener(wave.on_change)
    wave.started_at = time.time()
    wave.follow_gc(True)
    await runtime.start()
    sampler = asyncio.create_task(sample(runtime, wave))
    await wait_done(wave, limit)
    wave.follow_gc(False)
    await asyncio.sleep(2 * SAMPLE_SECONDS)
    sampler.cancel()
    await runtime.stop()
    return wave


def wave_rows(wave: Wave) -> list[tuple[str, str]]:
    seen = len(wave.seen_at)
    first_due, last_due = min(wave.due.values()), max(wave.due.values())
    first_seen, last_seen = min(wave.seen_at, default=0.0), max(wave.seen_at, default=0.0)
    drain = last_seen - first_seen
    rows = [
        ("messages submitted", f"{wave.count:,} in {wave.submit_seconds:.1f} s"),
        ("expiries seen", f"{seen:,}"),
    ]
    if wave.started_at:
        begin = wave.started_at
        rows += [
            (
                "all overdue at restart; behind by (newest / oldest)",
                f"{begin - last_due:.1f} / {begin - first_due:.1f} s",
            ),
            ("runtime start() to first expiry seen", f"{first_seen - begin:.2f} s"),
            ("runtime start() to all banners free", f"**{last_seen - begin:.2f} s**"),
        ]
        since_start = [t - begin for t in wave.seen_at]
        lateness = (
            "seen after start(): p50 / p99 / max",
            _spread(since_start, 1, ".2f") + " s",
        )
    else:
        rows += [
            ("due window (first due to last due)", f"{last_due - first_due:.2f} s"),
            (
                "submitting ended before the first due",
                "yes" if wave.submit_ended < first_due else "NO: overlap",
            ),
            ("first due to all banners free", f"**{last_seen - first_due:.2f} s**"),
        ]
        lateness = (
            "lateness seen - expires_at: p50 / p99 / max",
            _spread(wave.lateness, 1000, ",.0f") + " ms",
        )
    rows += [
        ("first to last expiry seen", f"{drain:.2f} s"),
        ("expiries/s (first to last seen)", f"**{seen / drain:,.0f}**" if drain > 0 else "-"),
        lateness,
        (
            "lateness change.at - expires_at: p50 / p99 / max",
            _spread(wave.turn_lateness, 1000, ",.0f") + " ms",
        ),
        ("GC pauses while expiring: full collections / their total / longest", _gc_row(wave)),
        ("reminders_in_memory: max sampled", f"{max(s[1] for s in wave.samples):,}"),
        ("actors in memory: max sampled", f"{max(s[2] for s in wave.samples):,}"),
        ("RSS: max sampled", f"{max(s[4] for s in wave.samples):,.0f} MB"),
    ]
    if wave.booked:
        during = [x for x in wave.switches if x[0] <= last_seen]
        rows += [
            (
                "queues / bookings started (their first) / during the wave's expiries",
                f"{wave.queued_expected:,} / {len(wave.switches):,} / {len(during):,}",
            ),
            (
                "booking start, change.at - slot start, during the wave: p50 / p99 / max",
                _spread([x[1] for x in during], 1000, ",.0f") + " ms",
            ),
            (
                "booking start, seen - slot start, during the wave: p50 / p99 / max",
                f"**{_spread([x[2] for x in during], 1000, ',.0f')} ms**",
            ),
            (
                "booking start, seen - slot start, all: p50 / p99 / max",
                _spread([x[2] for x in wave.switches], 1000, ",.0f") + " ms",
            ),
        ]
    return rows


def wave_figures(wave: Wave) -> dict[str, object]:
    """The figures of a wave for --json, with lateness as percentiles 0..100 (for a CDF)."""
    first_seen, last_seen = min(wave.seen_at, default=0.0), max(wave.seen_at, default=0.0)
    drain = last_seen - first_seen
    begin = wave.started_at or min(wave.due.values())
    return {
        "name": wave.name,
        "count": wave.count,
        "expired": len(wave.seen_at),
        "submit_seconds": wave.submit_seconds,
        "all_free_after_s": last_seen - begin,
        "restart": bool(wave.started_at),
        "drain_seconds": drain,
        "expiries_per_second": len(wave.seen_at) / drain if drain > 0 else None,
        "lateness_ms_percentiles": [percentile(wave.lateness, q) * 1000 for q in range(101)],
        "turn_lateness_ms_percentiles": [percentile(wave.turn_lateness, q) * 1000 for q in range(101)],
        "gc_full_collections": sum(1 for g, _ in wave.gc_pauses if g == 2),
        "gc_seconds": sum(t for _, t in wave.gc_pauses),
        "gc_longest_pause_ms": max((t * 1000 for _, t in wave.gc_pauses), default=0.0),
        "max_reminders_in_memory": max(s[1] for s in wave.samples),
        "max_actors_in_memory": max(s[2] for s in wave.samples),
        "max_rss_mb": max(s[4] for s in wave.samples),
        "bookings_queued": len(wave.booked),
        "booking_switch_seen_ms_percentiles": (
            [percentile([x[2] for x in wave.switches], q) * 1000 for q in range(101)]
            if wave.switches
            else None
        ),
    }


def _gc_row(wave: Wave) -> str:
    full = [t for g, t in wave.gc_pauses if g == 2]
    total = sum(t for _, t in wave.gc_pauses)
    return f"{len(full)} / {total:.2f} s (all generations) / {max(full, default=0.0) * 1000:,.0f} ms"


def _spread(values: list[float], scale: float, fmt: str) -> str:
    """p50 / p99 / max of `values` times `scale`."""
    if not values:
        return "-"
    return " / ".join(format(percentile(values, q) * scale, fmt) for q in (50, 99, 100))


def timeline(wave: Wave, rows: int = 14) -> str:
    """Samples around the expiries, thinned to about `rows` lines."""
    origin = wave.started_at or min(wave.due.values())
    start = wave.submit_started if not wave.started_at else wave.started_at
    picked = [s for s in wave.samples if s[0] >= start]
    step = max(1, math.ceil(len(picked) / rows))
    thinned = picked[::step] + ([picked[-1]] if picked and (len(picked) - 1) % step else [])
    label = "s since restart" if wave.started_at else "s since first due"
    return table(
        (label, "reminders_in_memory", "actors in memory", "expired", "RSS MB"),
        [(f"{t - origin:+.1f}", f"{r:,}", f"{a:,}", f"{e:,}", f"{m:,.0f}") for t, r, a, e, m in thinned],
    )


async def run(args: argparse.Namespace, data_dir: Path) -> tuple[SeedResult, Wave, Wave | None]:
    print(f"seeding {args.banners:,} banners ...", file=sys.stderr)
    seed = await seed_fleet(data_dir, args.banners, progress=False)
    live = await live_wave(data_dir, args.banners, args.display_seconds, args.timeout, args.queued)
    restart = None
    if not args.no_restart:
        restart = await restart_wave(data_dir, args.banners, args.display_seconds, args.timeout)
    return seed, live, restart


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--banners", type=int, default=100_000)
    parser.add_argument("--display-seconds", type=float, default=30.0, help="D: how long a message shows")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a wave to drain")
    parser.add_argument("--no-restart", action="store_true", help="skip the restart wave")
    parser.add_argument(
        "--queued", type=int, default=0, help="banners with a full queue of bookings, run through meanwhile"
    )
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine first")
    parser.add_argument("--max-wait", type=float, default=600.0, help="longest wait for a quiet machine (s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    tune_garbage_collector()  # the collector settings `airdisplay serve` runs with (cli/_uvicorn.py)
    before = conditions() if args.no_wait else wait_for_quiet_machine(args.max_wait)
    others = ForeignLoad()
    tmp = Path(tempfile.mkdtemp(prefix="airdisplay-bench-"))
    try:
        seed, live, restart = run_async(run(args, tmp / "data"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    other_cpus = others.cpus()
    waves = [w for w in (live, restart) if w is not None]

    print(f"## {args.banners:,} expiries (embedded runtime, in-process, D={args.display_seconds:g} s)\n")
    print(
        f"At the start: {before}; other processes used {other_cpus:.2f} CPUs on average meanwhile. "
        f"This process on CPUs {sorted(os.sched_getaffinity(0))}; "
        f"seeded {seed.count:,} banners in {seed.seconds:.1f} s ({seed.per_second:,.0f}/s)\n"
    )
    for wave in waves:
        print(f"### Wave: {wave.name}\n")
        print(table(("measure", "value"), wave_rows(wave)))
        print()
        print(timeline(wave))
        print()
    print(f"peak RSS of the process (VmHWM, seeding included): {rss_mb(field='VmHWM'):,.0f} MB\n")
    print(machine())
    write_json(
        args.json,
        "expiries",
        {
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "banners": args.banners,
            "waves": [wave_figures(wave) for wave in waves],
            "peak_rss_mb": rss_mb(field="VmHWM"),
            "other_cpus": other_cpus,
            "conditions": {"at_start": before},
        },
    )


if __name__ == "__main__":
    main()
