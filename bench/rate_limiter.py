"""The submit rate limiter's cost per call against the `limits` library's in-memory limiters, by client count.

AirDisplay keeps its own limiter (src/airdisplay/access/_limits.py: a token bucket per client, the least
recently used dropped past 100,000 clients) instead of the `limits` package. This is the figure that
choice rests on: the cost of one `hit` for a client among 1,000, 10,000 and 100,000 that the limiter
already holds, the clients taken in a random order (a fleet's submits come from everywhere), with the
server's default limit (30 a minute after a burst of 10).

`limits` is measured as a server would use it: its `MemoryStorage` (threads: the expiry pass runs in a
timer thread every 10 ms while hits arrive) and its asyncio `limits.aio` `MemoryStorage` (the pass is a
task of the event loop; the loop is given a turn every `HITS_PER_TURN` hits, as requests would), with the
fixed window, moving window and sliding window counter strategies at 30 a minute. The expiry passes scan
every key the storage holds, so their cost grows with the clients held; they are part of what a hit costs.

Each measurement fills the limiter with the clients, then hits them for `--seconds` (or `--hits`, whichever
comes first) and divides. About 20 s on a quiet machine (40 s on a busy one):

    uv run --with limits python bench/rate_limiter.py [--clients 1000,10000,100000 --seconds 0.3 --json PATH]

Without `limits` installed only AirDisplay's limiter is measured (the `--with` installs it for the run only;
it is no dependency of AirDisplay).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from _report import conditions, machine, table, wait_for_quiet_machine, write_json
from airdisplay.access._limits import RateLimiter

#: The server's defaults (config.py `submit_rate`, `submit_burst`).
PER_MINUTE = 30
BURST = 10
#: Hits between two turns of the event loop for the asyncio limiters: requests interleave with them.
HITS_PER_TURN = 64


@dataclass
class Subject:
    name: str
    make: Callable[[], tuple[Callable[[str], Any], Callable[[], None]]]  # (hit, close)
    is_async: bool = False


def _airdisplay() -> tuple[Callable[[str], Any], Callable[[], None]]:
    limiter = RateLimiter(PER_MINUTE, BURST)
    return limiter.hit, lambda: None


def _limits_subjects() -> list[Subject]:
    try:
        import limits
        from limits import aio, strategies
        from limits.storage import MemoryStorage
    except ImportError:
        return []
    item = limits.RateLimitItemPerMinute(PER_MINUTE)
    sync_strategies = {
        "fixed window": strategies.FixedWindowRateLimiter,
        "moving window": strategies.MovingWindowRateLimiter,
        "sliding window counter": strategies.SlidingWindowCounterRateLimiter,
    }
    async_strategies = {
        "fixed window": aio.strategies.FixedWindowRateLimiter,
        "moving window": aio.strategies.MovingWindowRateLimiter,
        "sliding window counter": aio.strategies.SlidingWindowCounterRateLimiter,
    }
    version = limits.__version__
    subjects = []
    for label, strategy in sync_strategies.items():

        def make(strategy: Any = strategy) -> tuple[Callable[[str], Any], Callable[[], None]]:
            storage = MemoryStorage()
            limiter = strategy(storage)

            def close() -> None:
                storage.timer.cancel()
                storage.timer.join()  # a pass under way would run into the next measurement

            return (lambda client: limiter.hit(item, client)), close

        subjects.append(Subject(f"limits {version} MemoryStorage, {label}", make))
    for label, strategy in async_strategies.items():

        def make_async(strategy: Any = strategy) -> tuple[Callable[[str], Any], Callable[[], None]]:
            storage = aio.storage.MemoryStorage()
            limiter = strategy(storage)

            def close() -> None:
                if storage.timer is not None:
                    storage.timer.cancel()

            return (lambda client: limiter.hit(item, client)), close

        subjects.append(Subject(f"limits {version} aio MemoryStorage, {label}", make_async, is_async=True))
    return subjects


def _addresses(count: int, rng: random.Random) -> list[str]:
    """`count` distinct IPv4 addresses (what the server counts a client by)."""
    picked = rng.sample(range(1 << 24), count)
    return [f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}" for n in picked]


def _measure_sync(
    hit: Callable[[str], Any], clients: list[str], order: list[str], seconds: float
) -> tuple[int, float]:
    for client in clients:
        hit(client)
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while done < len(order) and time.perf_counter() < deadline:
        for client in order[done : done + 1000]:
            hit(client)
        done = min(done + 1000, len(order))
    return done, time.perf_counter() - started


async def _measure_async(
    hit: Callable[[str], Awaitable[Any]], clients: list[str], order: list[str], seconds: float
) -> tuple[int, float]:
    for client in clients:  # no turn of the loop: the fill is set-up, so no expiry pass runs during it
        await hit(client)
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while done < len(order) and time.perf_counter() < deadline:
        for client in order[done : done + HITS_PER_TURN]:
            await hit(client)
        done = min(done + HITS_PER_TURN, len(order))
        await asyncio.sleep(0)
    return done, time.perf_counter() - started


def measure(subject: Subject, count: int, hits: int, seconds: float, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    clients = _addresses(count, rng)
    order = [clients[rng.randrange(count)] for _ in range(hits)]
    hit, close = subject.make()
    try:
        if subject.is_async:
            done, elapsed = asyncio.run(_measure_async(hit, clients, order, seconds))
        else:
            done, elapsed = _measure_sync(hit, clients, order, seconds)
    finally:
        close()
    return {"limiter": subject.name, "clients": count, "hits": done, "us_per_hit": elapsed / done * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="1000,10000,100000", help="comma-separated client counts")
    parser.add_argument("--hits", type=int, default=100_000, help="most hits measured per limiter and count")
    parser.add_argument(
        "--seconds", type=float, default=0.3, help="longest measurement per limiter and count"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", help="also write the figures as JSON here")
    parser.add_argument("--no-wait", action="store_true", help="measure at once, however busy the machine")
    parser.add_argument("--max-wait", type=float, default=600.0, help="longest wait for a quiet machine (s)")
    args = parser.parse_args()
    found = "not waited for" if args.no_wait else wait_for_quiet_machine(args.max_wait)
    counts = [int(c) for c in args.clients.split(",")]
    subjects = [Subject("AirDisplay RateLimiter (token bucket, LRU)", _airdisplay), *_limits_subjects()]
    before = conditions()
    rows = [measure(s, count, args.hits, args.seconds, args.seed) for s in subjects for count in counts]
    after = conditions()

    print("## Rate limiter: cost of one hit\n")
    print(
        f"One `hit` for a client the limiter already holds, clients in a random order, {PER_MINUTE} a minute "
        f"after a burst of {BURST} (the server's defaults); at most {args.hits:,} hits or {args.seconds:g} s "
        "per row. `limits` without `--with limits`: not measured.\n"
    )
    print(
        table(
            ("limiter", "clients", "hits measured", "us per hit"),
            [(r["limiter"], f"{r['clients']:,}", f"{r['hits']:,}", f"{r['us_per_hit']:.2f}") for r in rows],
        )
    )
    print()
    print(table(("check", "value"), [("quiet machine", found), ("before", before), ("after", after)]))
    print()
    print(machine())
    write_json(args.json, "rate_limiter", {"rows": rows})


if __name__ == "__main__":
    main()
