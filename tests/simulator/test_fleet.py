"""The fleet simulator against a real server: banners connect, acknowledge, drop and come back."""

from __future__ import annotations

import asyncio
import gc
import io

from airdisplay.simulator import Fleet, FleetStats, SimulationConfig, percentile
from airdisplay.simulator._stats import link_failure
from tests.conftest import eventually

OPERATOR_KEY = "operator-key-of-the-fleet-tests"
REFUSAL_KEYS = ("rate_limited", "busy", "auth", "client_error", "server_error", "connection")


async def test_simulated_fleet_connects_acknowledges_and_reconnects(start_server):
    server = await start_server(message_seconds=0.5)
    out = io.StringIO()
    config = SimulationConfig(
        url=server.url,
        banners=20,
        create=True,
        duration=2.5,
        submit_rate=20,
        drop_every=1.0,
        drop_fraction=0.25,
        down_seconds=0.2,
    )
    summary = await Fleet(config, out=out).run()
    assert summary["banners"] == 20
    assert summary["submits"] > 0 and summary["errors"] == 0
    assert (
        summary["acks"] == summary["displays"] >= 20
    )  # every display acknowledged, one per connect at least
    assert summary["reconnects"] >= 5  # the drops happened and the links came back
    assert summary["round_trip_ms"]["n"] > 0
    assert "connected 20/20" in out.getvalue()
    listing = (await server.client.get("/api/v1/banners", params={"limit": 50})).json()["items"]
    acknowledged = [b for b in listing if b["device"]["displayed_version"] is not None]
    assert len(acknowledged) == 20


async def test_a_storm_drops_every_link_and_reports_when_each_banner_showed_again(start_server):
    server = await start_server(message_seconds=60)
    out = io.StringIO()
    config = SimulationConfig(
        url=server.url, banners=30, create=True, duration=3.0, storm_after=0.3, down_seconds=1.0
    )
    summary = await Fleet(config, out=out).run()
    storm = summary["storm"]
    assert storm["dropped"] == 30
    assert storm["restored"] == 30  # every banner got its display again after coming back
    assert 0 < storm["restored_p50_s"] <= storm["restored_max_s"] < 3.0
    assert summary["errors"] == 0 and summary["links_refused"] == 0 and summary["connected"] == 30
    assert "storm: dropped all 30 links" in out.getvalue()


async def test_links_the_server_refuses_with_1013_are_counted(start_server):
    server = await start_server(max_device_links=2)
    summary = await Fleet(
        SimulationConfig(url=server.url, banners=3, create=True, duration=1.5), out=io.StringIO()
    ).run()
    assert summary["connected"] == 2
    assert summary["links_refused"] >= 1 and summary["errors"] == 0
    assert "storm" not in summary


async def test_a_second_run_rekeys_existing_banners(start_server):
    server = await start_server()
    config = SimulationConfig(url=server.url, banners=3, create=True, duration=0.2)
    await Fleet(config, out=io.StringIO()).run()
    again = await Fleet(SimulationConfig(url=server.url, banners=3, duration=0.2), out=io.StringIO()).run()
    assert again["errors"] == 0 and again["connected"] == 3


def test_every_failed_link_is_counted_under_its_kind():
    stats = FleetStats(banners=3)
    for failure in (TimeoutError(), ConnectionRefusedError(), TimeoutError(), 4401):
        stats.link_failed(link_failure(failure))
    summary = stats.summary()
    assert summary["errors"] == 4 == sum(summary["errors_by_kind"].values())
    assert summary["errors_by_kind"] == {"TimeoutError": 2, "ConnectionRefusedError": 1, "closed 4401": 1}


def test_percentile_by_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0


def test_progress_line_shows_refusals_by_kind():
    stats = FleetStats(banners=3)
    assert "refused 0 |" in stats.line({"displays": 0, "acks": 0})
    for status in (429, 429, 409, 401, 403, 404, 422, 500, 503, None):
        stats.count_refusal(status)
    line = stats.line({"displays": 0, "acks": 0})
    assert (
        "refused 10 (429 rate-limited 2, 409 busy 1, 401/403 auth 2, 4xx other 2, 5xx 2, connection 1)"
        in line
    )
    summary = stats.summary()
    assert summary["refused"] == 10
    assert summary["refusals"] == {
        "rate_limited": 2,
        "busy": 1,
        "auth": 2,
        "client_error": 2,
        "server_error": 2,
        "connection": 1,
    }


async def test_rate_limited_submits_are_counted_and_explained(start_server):
    server = await start_server(submit_rate=1, submit_burst=2)
    out = io.StringIO()
    config = SimulationConfig(url=server.url, banners=10, create=True, duration=1.0, submit_rate=20)
    summary = await Fleet(config, out=out).run()
    refusals = summary["refusals"]
    assert isinstance(refusals, dict)
    assert summary["submits"] == 2  # the burst; the rate is one a minute
    assert refusals["rate_limited"] > 0 and summary["refused"] == sum(refusals.values())
    hints = [line for line in out.getvalue().splitlines() if "rate-limits" in line]
    assert (
        len(hints) == 1 and "--api-key" in hints[0] and "airdisplay keys create --role operator" in hints[0]
    )


async def test_an_operator_key_lifts_the_submit_limit(start_server):
    server = await start_server(api_key=OPERATOR_KEY, submit_rate=1, submit_burst=2)
    config = SimulationConfig(
        url=server.url, banners=10, create=True, api_key=OPERATOR_KEY, duration=1.0, submit_rate=20
    )
    summary = await Fleet(config, out=io.StringIO()).run()
    assert summary["submits"] > 2  # more than the burst of an address without a key
    assert summary["refused"] == 0


async def test_a_busy_banner_is_refused_once_then_left_until_it_frees_up(start_server):
    server = await start_server(message_seconds=60)
    await server.create("sim-0")
    taken = await server.client.post("/api/v1/banners/sim-0/message", json={"text": "someone else's"})
    assert taken.status_code == 201
    config = SimulationConfig(url=server.url, banners=1, create=True, duration=0.5, submit_rate=20)
    summary = await Fleet(config, out=io.StringIO()).run()
    assert summary["submits"] == 0
    assert summary["refusals"] == {**dict.fromkeys(REFUSAL_KEYS, 0), "busy": 1}
    assert summary["skipped"] > 0  # the free_at of the 409 kept it from trying again


async def test_a_rate_the_fleet_cannot_sustain_is_named(start_server):
    server = await start_server(message_seconds=60)
    out = io.StringIO()
    config = SimulationConfig(url=server.url, banners=3, create=True, duration=0.5, submit_rate=5)
    await Fleet(config, out=out).run()
    assert "3 banners busy 60 s per message sustain at most 0.05 submits/s" in out.getvalue()


async def test_a_server_that_goes_away_counts_connection_refusals_and_leaks_no_task(start_server):
    server = await start_server(message_seconds=0.2)
    unretrieved: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: unretrieved.append(context))
    fleet = Fleet(SimulationConfig(url=server.url, banners=5, create=True, submit_rate=50), out=io.StringIO())
    run = asyncio.create_task(fleet.run())
    await eventually(lambda: fleet.stats.submits > 0 or run.done(), what="a submit")
    await server.stop()
    await eventually(
        lambda: fleet.stats.refusals["connection"] > 0 or run.done(), what="a refused connection"
    )
    fleet.stop()
    summary = await run
    assert summary["refusals"]["connection"] > 0
    gc.collect()
    assert unretrieved == []
