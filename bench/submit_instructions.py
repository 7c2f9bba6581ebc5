"""Instructions a submit costs over HTTP: the whole server process counted by valgrind's callgrind, for this
checkout's code and for another checkout's `src` (`--before`), each on a fleet seeded by its own code.

CPU time on a shared VM moves by more than the few per cent looked for here: bench/tracing_cost.py's paired
rounds of the same two servers ranged from -13% to +56% (docs/benchmarks/results/bookings_history_cost.md).
The instructions a process executes for the same requests barely move. callgrind counts all of the server's
user-space instructions, in every thread: uvicorn and httptools, the app, the actor runtime, the store's
writer and reader threads and SQLite. It does not count the kernel's work (the socket, the WAL's writes and
fsyncs), and it says nothing of how fast the instructions run (caches); those only a CPU-time measure sees.

Each server starts under valgrind with instrumentation off, takes `--warmup` submits, then `--rounds`
rounds of `--requests` submits. For each round the counters are zeroed, turned on, dumped after the last
answer and turned off again. The client keeps `--connections` keep-alive connections. Every request POSTs
{"text":"hello"} to a fresh pre-registered banner, as bench/submit.lua does, so each one is a 201 that shows
a message and arms its expiry.

    uv run python bench/submit_instructions.py --before /tmp/before/src [--requests 2000 --rounds 3]

Reported: instructions per submit for each server (the median of its rounds, with the range), and now
against before.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import airdisplay
from _fleet import NO_SUBMIT_LIMIT, ServerProcess, free_port
from _report import conditions, median, stop_on_signals, table, write_json
from tracing_cost import seed_with

#: The burst's messages outlast the run: no expiry happens while it is measured.
MESSAGE_SECONDS = 3600.0
_TOTALS = re.compile(rb"^(?:totals|summary):\s+(\d+)", re.MULTILINE)


def own_src() -> Path:
    """The `src` directory this process imports airdisplay from (PYTHONPATH=<archive>/src picks another)."""
    return Path(airdisplay.__file__).resolve().parents[1]


class Counted:
    """A server under callgrind: started with instrumentation off, counted round by round."""

    def __init__(self, name: str, src: Path, data_dir: Path, tmp: Path) -> None:
        self.name = name
        #: The last round's dump.
        self.dump = Path()
        self.out = tmp / f"callgrind.{name}.out"
        port = free_port()
        argv = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={self.out}",
            sys.executable,
            "-m",
            "airdisplay",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--message-seconds",
            f"{MESSAGE_SECONDS:g}",
            *NO_SUBMIT_LIMIT,
        ]
        self.server = ServerProcess(name, argv, port, tmp / f"{name}.log", env={"PYTHONPATH": str(src)})

    def control(self, *options: str) -> None:
        subprocess.run(
            ["callgrind_control", *options, str(self.server.pid)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def count(self, requests: list[int], connections: int) -> tuple[int, int]:
        """Zero, count `requests` submits, dump: (instructions, answers that were not 201)."""
        for dump in self.out.parent.glob(self.out.name + ".*"):
            dump.unlink()
        self.control("--zero")
        self.control("--instr=on")
        failed = asyncio.run(submit_all(self.server.port, requests, connections))
        self.control("--dump")
        self.control("--instr=off")
        deadline = time.monotonic() + 120
        while not (dumps := list(self.out.parent.glob(self.out.name + ".*"))):
            if time.monotonic() > deadline:
                raise RuntimeError(f"callgrind wrote no dump for {self.name}")
            time.sleep(0.5)
        time.sleep(1.0)  # let it finish writing
        self.dump = dumps[0]
        found = _TOTALS.search(dumps[0].read_bytes())
        if found is None:
            raise RuntimeError(f"no totals in {dumps[0]}")
        return int(found.group(1)), failed


async def submit_all(port: int, banners: list[int], connections: int) -> int:
    """POST a message to each banner over `connections` keep-alive connections; the answers not 201."""
    queue = list(reversed(banners))
    failed = 0

    async def one_connection() -> None:
        nonlocal failed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                n = queue.pop()
                body = b'{"text":"hello"}'
                writer.write(
                    b"POST /api/v1/banners/b%07d/message HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (n, len(body), body)
                )
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 201"):
                    failed += 1
        finally:
            writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, required=True, help="another checkout's src/")
    parser.add_argument("--requests", type=int, default=2000, help="submits counted per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=500, help="submits before the first round")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="keep each round's callgrind dump here (callgrind_annotate)"
    )
    args = parser.parse_args()
    stop_on_signals()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("valgrind not found: apt-get install -y valgrind")

    at_start = conditions()
    tmp = Path(tempfile.mkdtemp(prefix="airdisplay-instructions-"))
    banners = args.warmup + args.rounds * args.requests
    sources = {"now": own_src(), "before": args.before.resolve()}
    results: dict[str, list[float]] = {}
    try:
        for name, src in sources.items():
            seed_with(src, tmp / f"data-{name}", banners)
            counted = Counted(name, src, tmp / f"data-{name}", tmp)
            counted.server.start()
            try:
                counted.server.wait_ready(timeout=600.0)
                asyncio.run(submit_all(counted.server.port, list(range(args.warmup)), args.connections))
                per_submit = []
                for i in range(args.rounds):
                    first = args.warmup + i * args.requests
                    started = time.perf_counter()
                    total, failed = counted.count(list(range(first, first + args.requests)), args.connections)
                    if failed:
                        raise RuntimeError(f"{name}: {failed} of {args.requests} submits were not 201")
                    per_submit.append(total / args.requests)
                    if args.keep is not None:
                        args.keep.mkdir(parents=True, exist_ok=True)
                        shutil.copy(counted.dump, args.keep / f"callgrind.{name}.{i + 1}")
                    print(
                        f"{name} round {i + 1}: {total / args.requests:,.0f} instructions a submit "
                        f"({time.perf_counter() - started:.0f} s)",
                        file=sys.stderr,
                    )
                results[name] = per_submit
            finally:
                counted.server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    now, before = median(results["now"]), median(results["before"])
    print("## Instructions a submit costs, over HTTP (callgrind)\n")
    print(
        f'POST /api/v1/banners/{{id}}/message {{"text":"hello"}} to a fresh banner, {args.connections} '
        f"keep-alive connections, {args.rounds} x {args.requests:,} submits per server after "
        f"{args.warmup:,}; the whole server process, all threads, user space. Machine at the start: "
        f"{at_start}.\n"
    )
    rows = [
        (name, f"{median(v):,.0f}", f"{min(v):,.0f} - {max(v):,.0f}", f"{median(v) / before - 1:+.1%}")
        for name, v in results.items()
    ]
    print(table(["server", "instructions / submit (median)", "range", "vs before"], rows))
    print(f"\nnow ({sources['now']}) against before ({sources['before']}): **{now / before - 1:+.1%}**")
    if args.json:
        write_json(
            args.json,
            "submit_instructions",
            {
                "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "instructions_per_submit": results,
                "now_vs_before": now / before - 1,
                "conditions": {"at_start": at_start},
            },
        )


if __name__ == "__main__":
    main()
