"""What a device link costs the server: tasks (each holds coroutines the garbage collector scans; at 10,000
links those scans made the ack p99, docs/benchmarks/results/devices_gc_profile.md) and activations."""

from __future__ import annotations

import asyncio
import json

from tests.conftest import connect_device, eventually, recv

LINKS = 10


def server_tasks() -> int:
    """Tasks of this loop but those of the test's own WebSocket clients (websockets' keepalive)."""
    return sum(
        1 for t in asyncio.all_tasks() if "/websockets/asyncio/" not in t.get_coro().cr_code.co_filename
    )


async def test_an_idle_device_link_runs_on_one_task(start_server):
    """Its ASGI task, waiting for the device's frames: a sender runs only while frames wait, and heartbeats
    and stalls are watched by one sweeper for all links (there were six tasks a link, then four)."""
    server = await start_server()
    tokens = [(await server.create(f"b{i}")).json()["device_token"] for i in range(LINKS)]
    before = server_tasks()
    devices = [await connect_device(server, f"b{i}", token) for i, token in enumerate(tokens)]
    for ws in devices:
        assert (await recv(ws))["type"] == "display"
    await eventually(lambda: len(server.app.state.devices) == LINKS, what="all links attached")
    # Each display was sent: the senders end (right after their last write).
    await eventually(lambda: server_tasks() - before == LINKS, what="one task a link")
    for ws in devices:
        await ws.close()


async def test_a_linked_banner_stays_in_memory_so_its_acks_cost_no_activation(start_server):
    """With the idle timeout short, a banner without a link leaves memory between calls, and one with a
    link does not: its messages and acks are turns of the resident actor (before, each re-activated it)."""
    key = "k" * 32
    server = await start_server(api_key=key, client_sends_key=True, idle_seconds=0.05)
    host = server.runtime.host
    token = (await server.create("linked")).json()["device_token"]
    await server.create("marker")
    device = await connect_device(server, "linked", token)
    assert (await recv(device))["type"] == "display"
    await eventually(lambda: host.active_count == 1, what="the marker banner to leave memory")
    before = host.activations
    rounds = 3
    for i in range(rounds):
        assert (
            await server.client.post("/api/v1/banners/linked/message", json={"text": f"m{i}"})
        ).status_code == 201
        frame = await recv(device)
        await device.send(json.dumps({"type": "ack", "version": frame["version"]}))
        await eventually(
            lambda v=frame["version"]: (
                server.runtime.host.active_count >= 1
                and any(
                    c.banner_id == "linked"
                    and c.kind == "device_acknowledged"
                    and c.banner.device.displayed_version == v
                    for c in server.changes
                )
            ),
            what=f"ack {i}",
        )
        assert (await server.client.delete("/api/v1/banners/linked/message")).status_code == 200
        await recv(device)  # the cleared display
        await server.client.get("/api/v1/banners/marker")  # activates the marker ...
        await eventually(
            lambda: host.active_count == 1, what="the marker to leave memory again"
        )  # ... and idle
    assert host.activations - before == rounds  # the marker's, each round; none of the linked banner's
    await device.close()
