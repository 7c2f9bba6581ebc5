"""How many simulated banners one server holds connected, and the ack round trip at that load.

The server runs pinned to CPU 0; `airdisplay simulate` (every banner a real WebSocket speaking the device
protocol) pinned to CPU 1. For each fleet size it registers the banners, connects them all, then submits
messages to random free banners and reports, from the simulator's summary: how many stayed connected, the
submit-to-display delivery time and the ack round trip (submit start until the banner's ack is visible
on the event stream), plus the server's RSS.

    uv run python bench/devices.py                       # 1000, 5000, 10000, 19000 banners
    uv run python bench/devices.py --sizes 1000,2000 --submit-rate 20 --seconds 15
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import tempfile
from pathlib import Path

from _fleet import NO_SUBMIT_LIMIT, ServerProcess, airdisplay_command, free_port, pinned
from _report import machine, rss_mb, stop_on_signals, table, wait_for_quiet_machine, write_json


def raise_fd_limit() -> int:
    """Every banner is a socket on both sides: lift the soft limit on open files to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,5000,10000,19000")
    parser.add_argument("--submit-rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after connecting before submits")
    parser.add_argument("--no-wait", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args()
    stop_on_signals()  # servers are stopped in `finally` on SIGINT/SIGTERM too
    limit = raise_fd_limit()
    if not args.no_wait:
        print(wait_for_quiet_machine())
    rows = []
    figures: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="addev-") as tmp:
        for size in [int(s) for s in args.sizes.split(",")]:
            port = free_port()
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
                        f"{tmp}/d{size}",
                        "--message-seconds",
                        "1",
                        "--device-timeout",
                        "60",
                        *NO_SUBMIT_LIMIT,
                    ],
                ),
                port,
                Path(tmp) / f"server-{size}.log",
            )
            server.start()
            report = Path(tmp) / f"report-{size}.json"
            try:
                server.wait_ready()
                simulate = pinned(
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
                        "--submit-rate",
                        str(args.submit_rate),
                        "--duration",
                        str(args.seconds),
                        "--settle",
                        str(args.settle),
                        "--report",
                        str(report),
                    ],
                )
                subprocess.run(
                    simulate, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600
                )
                rss = rss_mb(server.pid)
            finally:
                server.stop()
            summary = json.loads(report.read_text())
            rt, dl = summary["round_trip_ms"], summary["delivery_ms"]
            figures.append({"banners": size, "simulator": summary, "server_rss_mb": rss})
            rows.append(
                [
                    size,
                    summary["connected"],
                    summary["reconnects"],
                    summary["errors"],
                    dl["p50"],
                    dl["p99"],
                    rt["p50"],
                    rt["p99"],
                    rt["n"],
                    f"{rss:.0f}",
                ]
            )
            if summary["connected"] < size:
                break
    print(
        f"\nDevice fleet: {args.submit_rate:g} submits/s for {args.seconds:g} s after all connect "
        f"(open-file limit {limit})\n"
    )
    print(
        table(
            [
                "banners",
                "connected",
                "reconnects",
                "errors",
                "delivery p50 ms",
                "delivery p99 ms",
                "ack round trip p50 ms",
                "p99 ms",
                "samples",
                "server RSS MB",
            ],
            rows,
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
        },
    )


if __name__ == "__main__":
    main()
