"""Attacks on the connection layer of a real `airdisplay serve` (issue 18), and what its limits cost.

- headers: `--parallel` connections each send a `GET /healthz` with one `--header-mib` MiB header; the
  answer each got and the server's peak RSS.
- idle: `--idle` connections from 127.0.0.1 that send nothing, opened at once, while a health probe from
  127.0.0.2 (another client address) runs every half second for `--probe-seconds`; the server starts with
  a soft open-file limit of `--nofile` (1,024 is the common default).
- cpu: the CPU time of uvicorn's httptools protocol and of the guarded one (cli/_connections.py), in
  process on a transport that drops what is written: per keep-alive request, and per connection with one
  request.
- throughput: wrk (`--connections`, one thread) on `GET /readyz` of a bare FastAPI app served by uvicorn
  with httptools, with AirDisplay's guarded protocol (cli/_connections.py) and with h11; runs alternate,
  medians reported. The submit path end to end: bench/submit_vs_bare.py.

    uv run python bench/http_attacks.py [headers idle cpu throughput] [--no-wait]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import resource
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _fleet import ServerProcess, airdisplay_command, free_port, pinned
from _report import machine, median, rss_mb, stop_on_signals, table, wait_for_quiet_machine

BENCH = Path(__file__).resolve().parent
#: The other client address of the idle attack's health probe (all of 127.0.0.0/8 is this machine).
PROBE_ADDRESS = "127.0.0.2"
PROBE_INTERVAL = 0.5
SEND_CHUNK = 64 * 1024

#: The three servers of the throughput runs: bare_app under uvicorn with one HTTP protocol each.
PROTOCOL_SERVERS = {
    "httptools": "{**uvicorn_options(), 'http': 'httptools', 'ws': 'websockets-sansio'}",
    "guarded": "uvicorn_options()",
    "h11": "{**uvicorn_options(), 'http': 'h11', 'ws': 'websockets-sansio'}",
}
RUNNER = """
import sys, uvicorn
sys.path.insert(0, {bench!r})
from airdisplay.cli import uvicorn_options
from bare_app import app
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning", access_log=False, loop="uvloop",
            **{options})
"""


def start_airdisplay(tmp: Path, command: str | None, nofile: str | None, *extra: str) -> ServerProcess:
    port = free_port()
    argv = [
        *(shlex.split(command) if command else airdisplay_command()),
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(tmp / f"data-{port}"),
    ]
    if nofile is not None:
        limits = nofile if ":" in nofile else f"{nofile}:{resource.getrlimit(resource.RLIMIT_NOFILE)[1]}"
        argv = ["prlimit", f"--nofile={limits}", "--", *argv]
    server = ServerProcess("airdisplay", [*argv, *extra], port, tmp / f"server-{port}.log")
    server.start()
    server.wait_ready("/healthz")
    return server


def soft_nofile(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return line.split()[3]
    return "?"


def huge_header(port: int, mib: int, outcomes: list[str]) -> None:
    """One request with a `mib` MiB header; what came back (a status, or how the server cut it off)."""
    head = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Big: "
    chunk = b"a" * SEND_CHUNK
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        try:
            sock.sendall(head)
            for _ in range(mib * 1024 * 1024 // SEND_CHUNK):
                sock.sendall(chunk)
                sent += SEND_CHUNK
            sock.sendall(b"\r\n\r\n")
        except OSError as exc:
            outcome = f"cut after {sent // 1024} KiB ({type(exc).__name__})"
        else:
            outcome = "sent all"
        try:
            status = sock.recv(64).split(b" ", 2)[1].decode()
        except (OSError, IndexError):
            status = "no answer"
        outcomes.append(f"{status}, {outcome}")


def headers_attack(tmp: Path, args: argparse.Namespace) -> None:
    server = start_airdisplay(tmp, args.command, None)
    try:
        before = rss_mb(server.pid)
        outcomes: list[str] = []
        threads = [
            threading.Thread(target=huge_header, args=(server.port, args.header_mib, outcomes))
            for _ in range(args.parallel)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        rows = [
            ("requests", f"{args.parallel} x {args.header_mib} MiB header"),
            ("answers", "; ".join(f"{n} x {o}" for o, n in Counter(outcomes).items())),
            ("seconds", f"{seconds:.1f}"),
            ("RSS before (MB)", f"{before:.0f}"),
            ("peak RSS (MB)", f"{rss_mb(server.pid, 'VmHWM'):.0f}"),
            ("RSS after (MB)", f"{rss_mb(server.pid):.0f}"),
        ]
        print("\n### Huge headers\n")
        print(table(["", ""], rows))
    finally:
        server.stop()


async def _hold_idle(port: int, outcomes: Counter[str], stop: asyncio.Event) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        outcomes[f"connect failed ({type(exc).__name__})"] += 1
        return
    try:
        read = asyncio.ensure_future(reader.read(64))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait([read, stopped], return_when=asyncio.FIRST_COMPLETED)
        if not read.done():
            outcomes["held open to the end"] += 1
            read.cancel()
        else:
            with contextlib.suppress(OSError):
                data = read.result()
                status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else ""
                outcomes[f"answered {status}" if status else "closed by the server"] += 1
            if read.exception() is not None:
                outcomes["reset by the server"] += 1
        stopped.cancel()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _probe(port: int, source: str) -> bool:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), 2
        )
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        line = await asyncio.wait_for(reader.readline(), 2)
        return line.startswith(b"HTTP/1.1 200")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _idle_attack(port: int, count: int, seconds: float) -> tuple[Counter[str], int, int, int, int]:
    outcomes: Counter[str] = Counter()
    stop = asyncio.Event()
    holders = [asyncio.ensure_future(_hold_idle(port, outcomes, stop)) for _ in range(count)]
    answered = probes = local_answered = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        probes += 1
        answered += await _probe(port, PROBE_ADDRESS)
        local_answered += await _probe(port, "127.0.0.1")
        await asyncio.sleep(PROBE_INTERVAL)
    stop.set()
    await asyncio.gather(*holders)
    return outcomes, probes, answered, local_answered, count


def idle_attack(tmp: Path, args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this process holds all the connections
    server = start_airdisplay(tmp, args.command, args.nofile)
    try:
        server_nofile = soft_nofile(server.pid)
        outcomes, probes, answered, local_answered, count = asyncio.run(
            _idle_attack(server.port, args.idle, args.probe_seconds)
        )
        rows = [
            ("server's soft open-file limit", server_nofile),
            ("idle connections attempted", f"{count:,}"),
            *((f"  {what}", f"{n:,}") for what, n in sorted(outcomes.items())),
            (f"health probes from {PROBE_ADDRESS} answered", f"{answered} of {probes}"),
            ("health probes from 127.0.0.1 answered", f"{local_answered} of {probes}"),
        ]
        print(f"\n### {count:,} idle connections from one address, {args.probe_seconds:.0f} s\n")
        print(table(["", ""], rows))
    finally:
        server.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _wrk(port: int, args: argparse.Namespace) -> float:
    out = subprocess.run(
        pinned(
            1,
            [
                "wrk",
                "-t1",
                f"-c{args.connections}",
                f"-d{args.duration:g}s",
                f"http://127.0.0.1:{port}/readyz",
            ],
        ),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match is not None, out
    return float(match.group(1))


class _NullTransport(asyncio.Transport):
    """A transport that drops what is written: the protocol's own CPU time, without sockets."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _ok(scope: dict[str, object], receive: object, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _protocol_cpu(rounds: int, requests: int) -> dict[str, list[float]]:
    """CPU µs per keep-alive request and per connection with one request, for each protocol class."""
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from airdisplay.cli import uvicorn_options

    guarded = uvicorn_options()["http"]
    config = uvicorn.Config(_ok, log_level="warning", lifespan="off", ws="websockets-sansio")
    config.load()
    state = ServerState()
    loop = asyncio.get_running_loop()
    request = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
    figures: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, protocol_class in (("httptools", HttpToolsProtocol), ("guarded", guarded)):
            protocol = protocol_class(config=config, server_state=state, app_state={}, _loop=loop)
            protocol.connection_made(_NullTransport())
            started = time.process_time()
            for _ in range(requests):
                protocol.data_received(request)
                await asyncio.sleep(0)  # the request's task runs and answers
            figures.setdefault(f"{name}: keep-alive request", []).append(
                (time.process_time() - started) / requests * 1e6
            )
            protocol.connection_lost(None)
            started = time.process_time()
            for _ in range(requests):
                protocol = protocol_class(config=config, server_state=state, app_state={}, _loop=loop)
                protocol.connection_made(_NullTransport())
                protocol.data_received(request)
                await asyncio.sleep(0)
                protocol.connection_lost(None)
            figures.setdefault(f"{name}: connection with one request", []).append(
                (time.process_time() - started) / requests * 1e6
            )
    return figures


def protocol_cpu(tmp: Path, args: argparse.Namespace) -> None:
    import uvloop

    figures = uvloop.run(_protocol_cpu(args.cpu_rounds, 5000))
    rows = [(what, f"{min(values):.1f}", f"{median(values):.1f}") for what, values in figures.items()]
    print(f"\n### CPU of uvicorn's protocol, in-process ({args.cpu_rounds} rounds of 5,000)\n")
    print(table(["", "best µs", "median µs"], rows))


def throughput(tmp: Path, args: argparse.Namespace) -> None:
    per_second: dict[str, list[float]] = {name: [] for name in PROTOCOL_SERVERS}
    for run in range(args.runs):
        for name, options in PROTOCOL_SERVERS.items():
            port = free_port()
            code = RUNNER.format(bench=str(BENCH), port=port, options=options)
            server = ServerProcess(name, pinned(0, [sys.executable, "-c", code]), port, tmp / f"{name}.log")
            server.start()
            try:
                server.wait_ready()
                _wrk(port, argparse.Namespace(**{**vars(args), "duration": 2}))  # warm-up
                per_second[name].append(_wrk(port, args))
            finally:
                server.stop()
        print(f"run {run + 1}: " + ", ".join(f"{n} {v[-1]:,.0f}/s" for n, v in per_second.items()))
    base = median(per_second["httptools"])
    rows = [
        (name, f"{median(values):,.0f}", f"{(median(values) / base - 1) * 100:+.1f}%", len(values))
        for name, values in per_second.items()
    ]
    print(f"\n### GET /readyz on bare FastAPI, wrk -c{args.connections}, {args.duration:.0f} s runs\n")
    print(table(["HTTP protocol", "req/s (median)", "vs httptools", "runs"], rows))


SCENARIOS = {"headers": headers_attack, "idle": idle_attack, "cpu": protocol_cpu, "throughput": throughput}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenarios", nargs="*", default=["headers", "idle", "cpu", "throughput"])
    parser.add_argument("--header-mib", type=int, default=64)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--idle", type=int, default=1100)
    parser.add_argument("--probe-seconds", type=float, default=20.0)
    parser.add_argument(
        "--nofile",
        default="1024",
        help="the server's soft open-file limit at start, or SOFT:HARD (1024:1024: nothing to raise)",
    )
    parser.add_argument(
        "--command",
        help="the server command instead of this environment's airdisplay (an older version, say: "
        "'env PYTHONPATH=/tmp/old/src python -m airdisplay')",
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per throughput run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cpu-rounds", type=int, default=15, help="rounds of the protocol CPU measure")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine first")
    parser.add_argument("--max-wait", type=float, default=600.0, help="longest wait for a quiet machine (s)")
    args = parser.parse_args()
    stop_on_signals()
    if not args.no_wait:
        wait_for_quiet_machine(args.max_wait)
    with tempfile.TemporaryDirectory(prefix="airdisplay-attacks-") as tmp:
        for scenario in args.scenarios:
            SCENARIOS[scenario](Path(tmp), args)
    print()
    print(machine())


if __name__ == "__main__":
    main()
