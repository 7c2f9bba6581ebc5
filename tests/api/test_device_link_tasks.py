"""What a device link costs the server in tasks: every task holds coroutines the garbage collector scans,
and at 10,000 links those scans made the ack p99 (docs/benchmarks/results/devices_gc_profile.md)."""

from __future__ import annotations

import asyncio

from tests.conftest import connect_device, eventually, recv

LINKS = 10


def server_tasks() -> int:
    """Tasks of this loop but those of the test's own WebSocket clients (websockets' keepalive)."""
    return sum(
        1 for t in asyncio.all_tasks() if "/websockets/asyncio/" not in t.get_coro().cr_code.co_filename
    )


async def test_a_device_link_runs_on_four_tasks(start_server):
    """The ASGI handler, its receiver and sender, and the wait for the link's end; heartbeats and stalls
    are watched by one sweeper for all links (there were six a link: two timer tasks each)."""
    server = await start_server()
    tokens = [(await server.create(f"b{i}")).json()["device_token"] for i in range(LINKS)]
    before = server_tasks()
    devices = [await connect_device(server, f"b{i}", token) for i, token in enumerate(tokens)]
    for ws in devices:
        assert (await recv(ws))["type"] == "display"
    await eventually(lambda: len(server.app.state.devices) == LINKS, what="all links attached")
    per_link = (server_tasks() - before) / LINKS
    assert per_link <= 4, f"{per_link:g} tasks a link"
    for ws in devices:
        await ws.close()
