"""PNG charts of the benchmark results for docs/benchmarks/ (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after the backend is chosen

#: One colour per system, the same in every chart.
COLOURS = {"AirDisplay": "#1f6feb", "bare FastAPI": "#8c959f", "PostgreSQL row locks": "#8250df"}
OTHER = "#d4a72c"
DPI = 110


def _colour(name: str) -> str:
    return COLOURS.get(name, "#cf222e" if name.startswith("Redis") else OTHER)


def _bars(ax: Any, names: list[str], values: list[float], fmt: str, title: str, unit: str) -> None:
    bars = ax.bar(range(len(names)), values, color=[_colour(n) for n in names])
    ax.set_xticks(range(len(names)), [n.replace(" (", "\n(") for n in names], fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(unit)
    ax.bar_label(bars, [format(v, fmt) for v in values], fontsize=8)
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def submit_chart(results: Mapping[str, Any], out: Path) -> Path:
    summary = results["summary"]
    names = [row["server"] for row in summary]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.4))
    _bars(left, names, [row["per_second"] for row in summary], ",.0f", "Submit throughput (median)", "req/s")
    _bars(right, names, [row["p99_ms"] for row in summary], ".1f", "Submit latency p99 (median)", "ms")
    fig.suptitle(f"AirDisplay / bare FastAPI: {results['ratio']:.0%}", fontsize=11)
    return _save(fig, out / "submit.png")


def alternatives_chart(results: Mapping[str, Any], out: Path) -> Path:
    rows = results["summary"]
    workloads = list(dict.fromkeys(row["workload"] for row in rows))
    fig, axes = plt.subplots(len(workloads), 2, figsize=(9, 3.4 * len(workloads)), squeeze=False)
    for (left, right), workload in zip(axes, workloads, strict=True):
        mine = [row for row in rows if row["workload"] == workload]
        names = [row["system"] for row in mine]
        label = "uniform" if workload == "uniform" else "hot-banner"
        _bars(
            left, names, [row["per_second"] for row in mine], ",.0f", f"{label}: answers/s (median)", "req/s"
        )
        _bars(right, names, [row["p99_ms"] for row in mine], ".1f", f"{label}: latency p99 (median)", "ms")
    return _save(fig, out / "alternatives.png")


def expiries_chart(results: Mapping[str, Any], out: Path) -> Path | None:
    live = [wave for wave in results["waves"] if not wave["restart"]]
    if not live:
        return None
    wave = live[0]
    quantiles = [q / 100 for q in range(101)]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(wave["lateness_ms_percentiles"], quantiles, label="seen by a listener - expires_at")
    ax.plot(wave["turn_lateness_ms_percentiles"], quantiles, label="expiry turn (change.at) - expires_at")
    ax.axvline(100, color="#cf222e", linestyle="--", linewidth=1, label="target p99 100 ms")
    ax.axhline(0.99, color="#8c959f", linestyle=":", linewidth=1)
    ax.set_xlabel("lateness, ms")
    ax.set_ylabel("share of expiries")
    ax.set_title(f"Expiry lateness, live wave of {wave['count']:,} messages (CDF)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "expiries.png")


def fanout_chart(results: Mapping[str, Any], out: Path) -> Path | None:
    rows = results["rows"]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.4))
    labels = [f"{row['clients']:,} client{'' if row['clients'] == 1 else 's'}" for row in rows]
    width = 0.38
    positions = range(len(rows))
    for shift, key, colour in ((-width / 2, "p50_ms", "#1f6feb"), (width / 2, "p99_ms", "#0a3069")):
        bars = ax.bar([p + shift for p in positions], [row[key] for row in rows], width, color=colour)
        ax.bar_label(bars, [f"{row[key]:.1f}" for row in rows], fontsize=8)
        bars.set_label(key.replace("_ms", ""))
    ax.axhline(50, color="#cf222e", linestyle="--", linewidth=1, label="target p99 50 ms (1,000 clients)")
    ax.set_xticks(list(positions), labels)
    ax.set_ylabel("submit to delivery, ms")
    ax.set_title("WebSocket fan-out latency", fontsize=10)
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "fanout.png")


def devices_chart(results: Mapping[str, Any], out: Path) -> Path | None:
    rows = [row for row in results["rows"] if row["simulator"]["round_trip_ms"]["p99"] is not None]
    if not rows:
        return None
    links = [row["banners"] for row in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    for key, label, colour in (
        ("round_trip_ms", "ack round trip", "#1f6feb"),
        ("delivery_ms", "delivery", "#0a3069"),
    ):
        left.plot(
            links, [row["simulator"][key]["p99"] for row in rows], marker="o", color=colour, label=label
        )
    left.axhline(100, color="#cf222e", linestyle="--", linewidth=1, label="target: ack p99 100 ms")
    left.axhline(50, color="#d4a72c", linestyle="--", linewidth=1, label="target: delivery p99 50 ms")
    left.set_title("p99 at 20 submits/s", fontsize=10)
    left.set_xlabel("linked banners")
    left.set_ylabel("ms")
    left.legend(fontsize=7)
    left.grid(alpha=0.3)
    right.plot(links, [row["server_rss_mb"] for row in rows], marker="o", color="#1f6feb", label="server RSS")
    right.plot(
        links,
        [row["server_rss_empty_mb"] + 20 * row["banners"] / 1024 for row in rows],
        color="#cf222e",
        linestyle="--",
        linewidth=1,
        label="target: 20 KB a link",
    )
    right.legend(fontsize=7)
    right.set_title("Server memory", fontsize=10)
    right.set_xlabel("linked banners")
    right.set_ylabel("MB")
    for x, row in zip(links, rows, strict=True):
        right.annotate(f"{row['kb_per_link']:.0f} KB a link", (x, row["server_rss_mb"]), fontsize=7)
    right.grid(alpha=0.3)
    return _save(fig, out / "devices.png")


#: Scenario name -> the chart it gets.
CHARTS = {
    "submit_vs_bare": submit_chart,
    "alternatives": alternatives_chart,
    "expiries": expiries_chart,
    "fanout": fanout_chart,
    "devices": devices_chart,
}
