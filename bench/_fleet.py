"""Seeding a fleet of banners (in-process, or through `airdisplay banners import`), and running a server
under test as a child process."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from _report import rss_mb
from airdisplay.domain import BannerRules
from airdisplay.runtimes import EmbeddedRuntime

T = TypeVar("T")

#: Concurrent create_banner calls while seeding. Workers that each take the next id keep the group commit
#: full all the time; gather() over fixed chunks idles at every chunk boundary (~7k vs ~10k creates/s here).
SEED_CONCURRENCY = 500


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on uvloop when it is installed: the loop `airdisplay serve` gets from uvicorn."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def banner_id(number: int) -> str:
    """The id of seeded banner `number`; bench/submit.lua builds the same ids."""
    return f"b{number:07d}"


@dataclass(frozen=True)
class SeedResult:
    count: int
    seconds: float
    stop_seconds: float
    peak_rss_mb: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds


async def seed_fleet(
    data_dir: Path,
    count: int,
    *,
    rules: BannerRules | None = None,
    concurrency: int = SEED_CONCURRENCY,
    progress: bool = True,
) -> SeedResult:
    """Register banners b0000000.. in `data_dir` through the embedded runtime, then stop it."""
    runtime = EmbeddedRuntime(data_dir, rules or BannerRules(display_seconds=3600))
    await runtime.start()
    numbers = iter(range(count))
    done = 0

    async def worker() -> None:
        nonlocal done
        for number in numbers:
            await runtime.create_banner(banner_id(number), f"Banner {number}")
            done += 1

    async def report() -> None:
        while True:
            await asyncio.sleep(10)
            print(f"  seeded {done:,}/{count:,} ({rss_mb():,.0f} MB RSS)", file=sys.stderr, flush=True)

    reporter = asyncio.create_task(report()) if progress else None
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    if reporter is not None:
        reporter.cancel()
    peak = rss_mb(field="VmHWM")
    started = time.perf_counter()
    await runtime.stop()
    return SeedResult(count, seconds, time.perf_counter() - started, peak)


@dataclass(frozen=True)
class ImportRun:
    """One `airdisplay banners import` of a generated fleet file, as an operator would run it."""

    count: int
    csv_seconds: float  # writing the CSV file (not part of the import)
    csv_bytes: int
    seconds: float  # wall time of the import process, start to exit
    importer_seconds: float  # the time the importer reports itself (after its interpreter started)
    peak_rss_mb: float  # the import process's peak RSS (wait4's ru_maxrss)
    cpu_seconds: float  # its user + system CPU time
    tokens_bytes: int  # size of the --tokens-out file; 0 without tokens

    @property
    def per_second(self) -> float:
        return self.count / self.seconds


def write_fleet_csv(path: Path, count: int) -> None:
    """The fleet file `airdisplay banners import` reads: header `id,name`, banners b0000000.. in order."""
    rows_per_write = 100_000
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("id,name\n")
        for start in range(0, count, rows_per_write):
            numbers = range(start, min(start + rows_per_write, count))
            handle.write("".join(f"{banner_id(n)},Banner {n}\n" for n in numbers))


def import_fleet_file(
    data_dir: Path, work_dir: Path, count: int, *, tokens: bool = True, progress: bool = True
) -> ImportRun:
    """Write a fleet file of `count` banners and register it with `airdisplay banners import`.

    With `tokens`, the import issues device tokens to `--tokens-out` (what a fleet needs to connect its
    banners). The importer's output goes to work_dir/import.log; a non-zero exit raises RuntimeError.
    """
    source = work_dir / "fleet.csv"
    started = time.perf_counter()
    write_fleet_csv(source, count)
    csv_seconds = time.perf_counter() - started
    tokens_path = work_dir / "device-tokens.csv"
    argv = airdisplay_command() + ["banners", "import", str(source), "--data-dir", str(data_dir)]
    if tokens:
        argv += ["--tokens-out", str(tokens_path)]
    log_path = work_dir / "import.log"
    with log_path.open("wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    # wait4, not Popen.wait: its rusage is this child's own (peak RSS and CPU), not all children's so far.
    last_report = started
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.05)
        if progress and time.perf_counter() - last_report >= 10:
            last_report = time.perf_counter()
            lines = log_path.read_text(errors="replace").splitlines()
            print(f"  import: {lines[-1].strip() if lines else 'starting'}", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    output = log_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited with {proc.returncode}: {output[-500:]}")
    reported = re.search(r"imported ([\d,]+) banners in ([\d.]+) s", output)
    if reported is None or int(reported[1].replace(",", "")) != count:
        raise RuntimeError(f"the import did not report {count:,} banners: {output[-500:]}")
    return ImportRun(
        count=count,
        csv_seconds=csv_seconds,
        csv_bytes=source.stat().st_size,
        seconds=seconds,
        importer_seconds=float(reported[2]),
        peak_rss_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        tokens_bytes=tokens_path.stat().st_size if tokens else 0,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


#: Every load generator here sends from one address, which the per-client submit limit and connection cap
#: would throttle (docs/security.md); the benchmarks measure the path, so their servers run with both off.
NO_SUBMIT_LIMIT = ["--submit-rate", "0", "--max-connections-per-client", "0"]


def airdisplay_command() -> list[str]:
    """`airdisplay` of this environment, run directly so that its PID is the server's (not uv's)."""
    script = Path(sys.executable).parent / "airdisplay"
    return [str(script)] if script.exists() else ["uv", "run", "airdisplay"]


def pinned(cpu: int | None, argv: list[str]) -> list[str]:
    """`argv` pinned to one CPU with taskset, when there is a CPU to spare and taskset exists."""
    if cpu is None or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return argv
    return ["taskset", "-c", str(cpu), *argv]


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class ServerProcess:
    """A server under test, started in its own session and stopped by its PID."""

    def __init__(
        self, name: str, argv: list[str], port: int, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.env = env
        self.argv = argv
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        log = self.log_path.open("wb")
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **self.env} if self.env else None,
        )
        log.close()

    def wait_ready(self, path: str = "/readyz", timeout: float = 120.0) -> float:
        """Poll `path` until it answers 200; seconds since the process was started."""
        assert self.proc is not None
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            try:
                status, _ = http_get(self.base_url + path, timeout=1.0)
                if status == 200:
                    return time.perf_counter() - self.started_at
            except OSError:
                pass
            time.sleep(0.005)
        raise TimeoutError(f"{self.name} not ready after {timeout} s; see {self.log_path}")

    def stop(self, timeout: float = 60.0) -> None:
        """SIGINT (graceful: the runtime commits and closes), then SIGKILL if it does not exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
