"""FastHistogram (airdisplay/histogram.py) against prometheus_client's own Histogram: the same page."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics, generate_latest

from airdisplay.histogram import FastHistogram

BUCKETS = (0.001, 0.01, 0.1, 1.0, 10.0)
#: Values on, between, below and past the bounds (a value equal to a bound counts in it: `le`).
VALUES = [0.0, 0.0005, 0.001, 0.002, 0.01, 0.05, 0.1, 1.0, 3.5, 10.0, 11.0, 1e9]


def page(make: type, labelled: bool) -> bytes:
    registry = CollectorRegistry(auto_describe=True)
    if labelled:
        histogram = make("demo_seconds", "A demo", ["route"], buckets=BUCKETS, registry=registry)
        for index, value in enumerate(VALUES):
            histogram.labels("/a" if index % 3 else "/b").observe(value)
    else:
        histogram = make("demo_seconds", "A demo", buckets=BUCKETS, registry=registry)
        for value in VALUES:
            histogram.observe(value)
    return generate_latest(registry)


@pytest.mark.parametrize("labelled", [False, True])
def test_the_page_is_prometheus_clients_own(labelled: bool) -> None:
    disable_created_metrics()  # type: ignore[no-untyped-call]  # as the server does (api/_metrics.py)
    assert page(FastHistogram, labelled) == page(Histogram, labelled)


def test_bad_buckets_and_labels_are_refused() -> None:
    registry = CollectorRegistry()
    with pytest.raises(ValueError, match="increase"):
        FastHistogram("a_seconds", "A", buckets=(1.0, 0.5), registry=registry)
    labelled = FastHistogram("b_seconds", "B", ["route"], buckets=BUCKETS, registry=registry)
    with pytest.raises(ValueError, match="labels"):
        labelled.observe(1.0)
    with pytest.raises(ValueError, match="labels"):
        labelled.labels("x", "y")


def test_a_writer_thread_and_scrapes_at_once_lose_nothing() -> None:
    """One writer (the store's thread) while the loop scrapes: every observation is counted in the end."""
    registry = CollectorRegistry()
    histogram = FastHistogram("c_seconds", "C", buckets=BUCKETS, registry=registry)
    count = 200_000

    def write() -> None:
        for index in range(count):
            histogram.observe(index % 7 / 100)

    writer = threading.Thread(target=write)
    writer.start()
    while writer.is_alive():
        generate_latest(registry)
    writer.join()
    assert registry.get_sample_value("c_seconds_count") == count
    assert registry.get_sample_value("c_seconds_bucket", {"le": "+Inf"}) == count
