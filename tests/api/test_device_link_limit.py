"""The device-link limit (--max-device-links): links past it are closed with 1013 and counted, before their
token is checked; a banner's new link replacing its own old one always fits."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import ConnectionClosed

from airdisplay.cli._serve import limit_device_links
from airdisplay.events import InProcessEventBus
from airdisplay.realtime import DeviceLinks
from tests.conftest import connect_device, eventually, recv

FRAME_WAIT = 10.0


async def close_code(ws) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), FRAME_WAIT)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def token_of(server, banner_id: str) -> str:
    return (await server.create(banner_id)).json()["device_token"]


async def refusals(server) -> float:
    text = (await server.client.get("/metrics")).text
    line = next(ln for ln in text.splitlines() if ln.startswith("airdisplay_device_links_refused_total "))
    return float(line.split()[1])


async def test_links_past_the_limit_are_closed_with_1013_and_counted(start_server):
    server = await start_server(max_device_links=2)
    tokens = {b: await token_of(server, b) for b in ("b1", "b2", "b3")}
    first = await connect_device(server, "b1", tokens["b1"])
    second = await connect_device(server, "b2", tokens["b2"])
    for ws in (first, second):
        assert (await recv(ws))["type"] == "display"

    third = await connect_device(server, "b3", tokens["b3"])
    code, reason = await close_code(third)
    assert code == 1013 and "most device links (2)" in reason
    assert await refusals(server) == 1
    # Refused before its token is checked: a bad token gets the same answer, not a 4401.
    stranger = await connect_device(server, "b3", "not-a-token")
    assert (await close_code(stranger))[0] == 1013

    # b1's own new link replaces its old one: it fits, and the old one is told it was replaced.
    again = await connect_device(server, "b1", tokens["b1"])
    assert (await recv(again))["type"] == "display"
    assert (await close_code(first))[0] == 4409

    # Once a link ends, there is room again.
    await second.close()
    await eventually(lambda: len(server.app.state.devices) == 1, what="b2's link to end")
    third = await connect_device(server, "b3", tokens["b3"])
    assert (await recv(third))["type"] == "display"
    await again.close()
    await third.close()


def test_without_a_limit_links_get_nine_tenths_of_the_open_file_room():
    links = DeviceLinks(InProcessEventBus())
    limit_device_links(links, 20_000)
    assert links.limit == 18_000
    given = DeviceLinks(InProcessEventBus(), limit=500)
    limit_device_links(given, 20_000)
    assert given.limit == 500  # --max-device-links wins
    unlimited = DeviceLinks(InProcessEventBus())
    limit_device_links(unlimited, None)  # no open-file limit at all
    assert unlimited.limit == 0 and unlimited.has_room("any")
