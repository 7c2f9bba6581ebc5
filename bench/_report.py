"""What every benchmark prints: the machine it ran on and its figures as compact Markdown tables."""

from __future__ import annotations

import datetime
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path


def stop_on_signals() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt, so that `finally` stops the servers started.

    A shell starts a background job with SIGINT ignored, and SIGTERM would end Python without unwinding.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def _meminfo_mb(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    return 0


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def pytest_processes() -> int:
    """Test runs on this machine at the moment (they share the 2 CPUs with the benchmark)."""
    count = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.endswith((b"pytest", b"py.test")) for arg in argv[:3]) or b"pytest" in argv[1:3]:
            count += 1
    return count


def conditions() -> str:
    """Load average and running test processes, to print before and after the measurement."""
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"load average (1/5/15 min) {load}, pytest processes {pytest_processes()}"


def cpu_busy(seconds: float = 2.0) -> float:
    """Share of all CPUs busy over the next `seconds`, from /proc/stat."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_for_quiet_machine(limit: float = 600.0, busy_below: float = 0.10) -> str:
    """Wait (up to `limit` s) until no pytest runs and the CPUs are nearly idle; say what was found."""
    deadline = time.monotonic() + limit
    while True:
        busy, tests = cpu_busy(), pytest_processes()
        if (busy < busy_below and tests == 0) or time.monotonic() > deadline:
            quiet = "quiet" if busy < busy_below and tests == 0 else "STILL BUSY after waiting"
            return f"{quiet}: CPUs {busy:.0%} busy, {conditions()}"
        print(f"machine busy (CPUs {busy:.0%}, pytest processes {tests}); waiting ...", file=sys.stderr)
        time.sleep(20)


def source_state() -> str:
    """The commit the figures are for, and whether src/ had uncommitted changes."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "src"], capture_output=True, text=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"{head[:70]}; {len(dirty)} uncommitted change(s) under src/" if dirty else f"{head[:70]}; clean"


_TICK = os.sysconf("SC_CLK_TCK")


def _busy_seconds() -> float:
    """CPU time all CPUs spent busy since boot (user, nice, system, irq, softirq, steal)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]) / _TICK


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) that a live process has used so far; 0.0 once it is gone."""
    return _process_seconds(pid)


def main_thread_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a live process's main thread alone (an asyncio server's event loop);
    0.0 once it is gone. The rest of `cpu_seconds` is its other threads' (a store's writer, readers)."""
    return _stat_seconds(f"/proc/{pid}/task/{pid}/stat")


def _process_seconds(pid: int) -> float:
    return _stat_seconds(f"/proc/{pid}/stat")  # all threads


def _stat_seconds(path: str) -> float:
    """utime + stime of a /proc stat file (a process's, or one thread's); 0.0 once it is gone."""
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


class ForeignLoad:
    """CPU used by other processes during a measurement, in CPUs on average.

    All busy CPU time minus this process's, its reaped children's and the given live processes'. Loopback
    networking and kernel threads count as foreign too, so a quiet machine shows a few hundredths.
    """

    def __init__(self, pids: Iterable[int] = ()) -> None:
        self.pids = list(pids)
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, float]:
        own = os.times()
        ours = own.user + own.system + own.children_user + own.children_system
        ours += sum(_process_seconds(pid) for pid in self.pids)
        return time.monotonic(), _busy_seconds(), ours

    def cpus(self) -> float:
        """Average CPUs used by others since this object was made."""
        wall0, busy0, ours0 = self._start
        wall1, busy1, ours1 = self._sample()
        return max((busy1 - busy0) - (ours1 - ours0), 0.0) / max(wall1 - wall0, 1e-9)


def machine_rows(extra: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """The machine and software the figures come from, with the load when they were taken."""
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    libs = ", ".join(
        f"{p} {_version(p)}" for p in ("fastapi", "starlette", "pydantic", "uvicorn", "uvloop", "httptools")
    )
    return [
        ("CPUs (nproc)", f"{os.cpu_count()} x {_cpu_model()}"),
        ("memory", f"{_meminfo_mb('MemTotal'):,} MB total, {_meminfo_mb('MemAvailable'):,} MB available"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("SQLite", sqlite3.sqlite_version),
        ("kernel", platform.release()),
        ("libraries", libs),
        *extra,
        ("AirDisplay source", source_state()),
        ("load average (1/5/15 min) at the end", load),
        ("pytest processes at the end", str(pytest_processes())),
    ]


def machine(extra: Iterable[tuple[str, str]] = ()) -> str:
    """A table of the machine and software the figures come from, with the load when it was taken."""
    return table(("machine", ""), machine_rows(extra))


def write_json(
    path: str | Path | None,
    scenario: str,
    results: Mapping[str, object],
    extra: Iterable[tuple[str, str]] = (),
) -> None:
    """Write a scenario's results and the machine rows as JSON for bench/report.py; nothing without a path."""
    if not path:
        return
    document = {
        "scenario": scenario,
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "results": results,
        "machine": dict(machine_rows(extra)),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(document, indent=2, default=str) + "\n")


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table; numbers right-aligned."""
    body = [[str(cell) for cell in row] for row in rows]
    numeric = [
        all(_looks_numeric(row[i]) for row in body if i < len(row) and row[i]) and bool(body)
        for i in range(len(header))
    ]
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _looks_numeric(cell: str) -> bool:
    return cell.replace(",", "").replace(".", "").replace("x", "").replace("-", "").strip().isdigit()


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def rss_mb(pid: int | str = "self", field: str = "VmRSS") -> float:
    """Resident memory of a process in MB from /proc/PID/status (VmRSS now, VmHWM peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0
