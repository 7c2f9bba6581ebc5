"""The fleet simulator against a real server: banners connect, acknowledge, drop and come back."""

from __future__ import annotations

import io

from airdisplay.simulator import Fleet, SimulationConfig, percentile
from tests.api.conftest import start_server  # noqa: F401 - the fixture


async def test_simulated_fleet_connects_acknowledges_and_reconnects(start_server):  # noqa: F811
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


async def test_a_second_run_rekeys_existing_banners(start_server):  # noqa: F811
    server = await start_server()
    config = SimulationConfig(url=server.url, banners=3, create=True, duration=0.2)
    await Fleet(config, out=io.StringIO()).run()
    again = await Fleet(SimulationConfig(url=server.url, banners=3, duration=0.2), out=io.StringIO()).run()
    assert again["errors"] == 0 and again["connected"] == 3


def test_percentile_by_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
