"""How many simulated banners one server holds linked, the ack round trip at that load, and a reconnect storm.

The server runs pinned to CPU 0; `airdisplay simulate` (every banner a real WebSocket speaking the device
protocol) pinned to CPU 1. For each fleet size it registers the banners, connects them all, lets the
connect wave settle, then submits messages to random free banners and reports, from the simulator's
summary: how many stayed connected, the submit-to-display delivery time and the ack round trip (submit
start until the banner's ack is visible on the event stream). From the server: its RSS per link (after
connecting, over its RSS before), and the longest event-loop stall of the measured phase (its /metrics,
read when the submits start and when they end; api/_loop_watch.py).

Storm runs (--storm-sizes): the fleet connects, every link drops at once and each comes back at a random
moment within 10 s; reported: how soon every banner showed its display again, links refused or failed,
the server's CPU seconds for it and its longest stall.

    uv run python bench/devices.py                       # 1000, 5000, 10000, 19800 banners; storm 5000
    uv run python bench/devices.py --sizes 1000,2000 --submit-rate 20 --seconds 15 --storm-sizes ""
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _fleet import NO_SUBMIT_LIMIT, ServerProcess, airdisplay_command, free_port, http_get, pinned
from _report import cpu_seconds, machine, rss_mb, stop_on_signals, table, wait_for_quiet_machine, write_json

#: The server's default share of the open-file room for device links (cli/_serve.py): larger fleets set
#: --max-device-links to their size.
AUTO_SHARE = 0.9
#: A storm: every link drops, each back within this many seconds.
STORM_SPREAD = 10.0


def raise_fd_limit() -> int:
    """Every banner is a socket on both sides: lift the soft limit on open files to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class LoopFigures:
    """The server's event-loop figures from one read of its /metrics."""

    def __init__(self, server: ServerProcess) -> None:
        _, body = http_get(server.base_url + "/metrics")
        text = body.decode()
        self.longest = self._value(text, "airdisplay_event_loop_longest_stall_seconds")
        self.buckets = {
            float(le): float(count)
            for le, count in re.findall(
                r'^airdisplay_event_loop_lag_seconds_bucket\{le="([^"+]+)"\} (\S+)$', text, re.M
            )
        }
        self.count = self._value(text, "airdisplay_event_loop_lag_seconds_count")

    @staticmethod
    def _value(text: str, name: str) -> float:
        found = re.search(rf"^{name} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    def longest_since(self, before: LoopFigures) -> str:
        """The longest stall between two reads: exact when it was the longest since start, else the bound
        of the smallest histogram bucket that holds every wait of the phase."""
        if self.longest > before.longest:
            return f"{self.longest * 1000:.0f}"
        total = self.count - before.count
        for bound in sorted(self.buckets):
            if self.buckets[bound] - before.buckets.get(bound, 0.0) >= total:
                return f"<= {bound * 1000:g}"
        return f"> {max(self.buckets) * 1000:g}"

    def over_since(self, before: LoopFigures, seconds: float) -> int:
        """Waits later than `seconds` between two reads."""
        total = self.count - before.count
        within = self.buckets.get(seconds, 0.0) - before.buckets.get(seconds, 0.0)
        return int(total - within)


def start_server(size: int, tmp: str, message_seconds: float, limit: int) -> ServerProcess:
    port = free_port()
    links = ["--max-device-links", str(size)] if size > (limit - 64) * AUTO_SHARE else []
    server = ServerProcess(
        f"airdisplay ({size} banners)",
        pinned(
            0,
            [
                *airdisplay_command(),
                "serve",
                "--port",
                str(port),
                "--data-dir",
                f"{tmp}/d{size}-{port}",
                "--message-seconds",
                f"{message_seconds:g}",
                "--device-timeout",
                "60",
                *links,
                *NO_SUBMIT_LIMIT,
            ],
        ),
        port,
        Path(tmp) / f"server-{size}-{port}.log",
    )
    server.start()
    return server


def simulate(
    server: ServerProcess, size: int, report: Path, log: Path, *options: str
) -> subprocess.Popen[bytes]:
    argv = pinned(
        1,
        [
            *airdisplay_command(),
            "simulate",
            "--url",
            server.base_url,
            "--banners",
            str(size),
            "--create",
            "--connect-rate",
            "1000",
            "--report",
            str(report),
            *options,
        ],
    )
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=out)


def wait_for_line(proc: subprocess.Popen[bytes], log: Path, text: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(
                f"the simulator exited ({proc.returncode}) before '{text}': {' / '.join(tail)}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"no '{text}' from the simulator in {timeout:g} s; see {log}")
        time.sleep(0.1)


@dataclass
class FleetRun:
    """A server for a fleet and `airdisplay simulate` against it (see `fleet_run`)."""

    server: ServerProcess
    simulator: subprocess.Popen[bytes]
    log: Path
    report: Path
    #: The server's RSS once ready, before any banner exists.
    rss_empty_mb: float

    def wait_for(self, text: str) -> None:
        wait_for_line(self.simulator, self.log, text)

    def summary(self) -> dict[str, Any]:
        """The simulator's summary (once it has ended)."""
        summary: dict[str, Any] = json.loads(self.report.read_text())
        return summary


@contextmanager
def fleet_run(
    name: str, size: int, tmp: str, limit: int, message_seconds: float, *options: str
) -> Iterator[FleetRun]:
    """Start a server and `size` simulated banners with `options`; at the end wait for the simulator
    (killed if it outlives its timeout) and stop the server."""
    server = start_server(size, tmp, message_seconds, limit)
    try:
        server.wait_ready()
        rss_empty = rss_mb(server.pid)
        report, log = Path(tmp) / f"{name}-{size}.json", Path(tmp) / f"{name}-{size}.log"
        run = FleetRun(server, simulate(server, size, report, log, *options), log, report, rss_empty)
        try:
            yield run
            run.simulator.wait(timeout=600)
        finally:
            if run.simulator.poll() is None:
                run.simulator.kill()
    finally:
        server.stop()


def measure_load(size: int, args: argparse.Namespace, tmp: str, limit: int) -> dict[str, Any]:
    options = ["--submit-rate", str(args.submit_rate), "--duration", str(args.seconds)]
    with fleet_run("load", size, tmp, limit, 1, *options, "--settle", str(args.settle)) as run:
        run.wait_for("running for")
        before, rss_linked = LoopFigures(run.server), rss_mb(run.server.pid)
        time.sleep(max(args.seconds - 0.5, 0.1))
        after = LoopFigures(run.server)
    return {
        "banners": size,
        "simulator": run.summary(),
        "server_rss_mb": rss_linked,
        "server_rss_empty_mb": run.rss_empty_mb,
        "kb_per_link": (rss_linked - run.rss_empty_mb) * 1024 / size,
        "longest_stall_ms": after.longest_since(before),
        "stalls_over_50ms": after.over_since(before, 0.05),
    }


def measure_storm(size: int, tmp: str, limit: int) -> dict[str, Any]:
    """Connect `size` links, then drop them all; each comes back within STORM_SPREAD seconds."""
    storm_after, settle = 5.0, 5.0
    options = [
        *("--submit-rate", "5"),  # some banners show a message when the storm hits
        *("--settle", str(settle), "--storm-after", str(storm_after)),
        *("--down-seconds", str(STORM_SPREAD), "--duration", str(storm_after + STORM_SPREAD + 20)),
    ]
    with fleet_run("storm", size, tmp, limit, 60, *options) as run:
        run.wait_for("storm:")
        before, cpu_before = LoopFigures(run.server), cpu_seconds(run.server.pid)
        run.simulator.wait(timeout=600)
        after, cpu_after = LoopFigures(run.server), cpu_seconds(run.server.pid)
    return {
        "banners": size,
        "simulator": run.summary(),
        "server_cpu_s": cpu_after - cpu_before,
        "longest_stall_ms": after.longest_since(before),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,5000,10000,19800")
    parser.add_argument("--storm-sizes", default="5000")
    parser.add_argument("--submit-rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after connecting before submits")
    parser.add_argument("--no-wait", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args()
    stop_on_signals()  # servers are stopped in `finally` on SIGINT/SIGTERM too
    limit = raise_fd_limit()
    if not args.no_wait:
        print(wait_for_quiet_machine())
    figures: list[dict[str, Any]] = []
    storms: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="addev-") as tmp:
        for size in [int(s) for s in args.sizes.split(",") if s]:
            row = measure_load(size, args, tmp, limit)
            figures.append(row)
            if row["simulator"]["connected"] < size:
                break
        for size in [int(s) for s in args.storm_sizes.split(",") if s]:
            storms.append(measure_storm(size, tmp, limit))
    print(
        f"\nDevice fleet: {args.submit_rate:g} submits/s for {args.seconds:g} s after all connect and "
        f"{args.settle:g} s of settling (open-file limit {limit})\n"
    )
    print(
        table(
            [
                "banners",
                "connected",
                "errors",
                "delivery p50 ms",
                "delivery p99 ms",
                "ack round trip p50 ms",
                "p99 ms",
                "samples",
                "longest loop stall ms",
                "server RSS MB",
                "KB a link",
            ],
            [
                [
                    row["banners"],
                    row["simulator"]["connected"],
                    row["simulator"]["errors"],
                    row["simulator"]["delivery_ms"]["p50"],
                    row["simulator"]["delivery_ms"]["p99"],
                    row["simulator"]["round_trip_ms"]["p50"],
                    row["simulator"]["round_trip_ms"]["p99"],
                    row["simulator"]["round_trip_ms"]["n"],
                    row["longest_stall_ms"],
                    f"{row['server_rss_mb']:.0f}",
                    f"{row['kb_per_link']:.0f}",
                ]
                for row in figures
            ],
        )
    )
    if storms:
        print(f"\nReconnect storm: every link drops at once, each back within {STORM_SPREAD:g} s\n")
        print(
            table(
                [
                    "banners",
                    "restored",
                    "restored p50 s",
                    "p99 s",
                    "last s",
                    "failed connects",
                    "refused (1013)",
                    "server CPU s",
                    "longest loop stall ms",
                ],
                [
                    [
                        row["banners"],
                        row["simulator"]["storm"]["restored"],
                        row["simulator"]["storm"]["restored_p50_s"],
                        row["simulator"]["storm"]["restored_p99_s"],
                        row["simulator"]["storm"]["restored_max_s"],
                        row["simulator"]["errors"],
                        row["simulator"]["links_refused"],
                        f"{row['server_cpu_s']:.1f}",
                        row["longest_stall_ms"],
                    ]
                    for row in storms
                ],
            )
        )
    print()
    print(machine())
    write_json(
        args.json,
        "devices",
        {
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "open_file_limit": limit,
            "rows": figures,
            "storms": storms,
        },
    )


if __name__ == "__main__":
    main()
