"""The device channel against a real server: tokens, display frames, acks, heartbeats, offline policy."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from airdisplay.api.routes.devices import DEVICE_FRAME_BURST, DEVICE_FRAMES_PER_SECOND, FrameBudget
from tests.conftest import FRAME_WAIT, StreamClient, connect_device, eventually, recv

DEVICE_DOC = Path(__file__).parents[2] / "docs" / "device-protocol.md"
#: Frames a flooding test sends at most: 20 budgets' worth, so the link is over budget unless the server
#: took (2,000 - 100) / 10 = 190 s to read them.
FLOOD_FRAMES = 20 * DEVICE_FRAME_BURST


async def closed_with(ws) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), FRAME_WAIT)
    return closed.value.rcvd.code


async def register(server, banner_id: str) -> str:
    return (await server.create(banner_id)).json()["device_token"]


async def banner(server, banner_id: str) -> dict:
    return (await server.client.get(f"/api/v1/banners/{banner_id}")).json()


async def test_token_is_shown_once_at_creation(server):
    created = (await server.create("b1")).json()
    assert len(created["device_token"]) >= 40
    assert "device_token" not in await banner(server, "b1")
    listing = (await server.client.get("/api/v1/banners")).json()
    assert "device_token" not in json.dumps(listing)


async def test_ack_flow_end_to_end(server):
    token = await register(server, "b1")
    ui = await StreamClient.connect(server, "?banners=b1")
    device = await connect_device(server, "b1", token)
    try:
        first = await recv(device)
        assert first == {"type": "display", "version": 1, "text": None, "expires_at": None}
        await eventually(lambda: any(c.kind == "device_online" for c in server.changes), what="online")

        shown = (await server.client.post("/api/v1/banners/b1/message", json={"text": "Hi ✈"})).json()
        display = await recv(device)
        assert display["version"] == 2 and display["text"] == "Hi ✈"
        assert display["expires_at"] == shown["message"]["expires_at"]
        assert (await banner(server, "b1"))["device"]["displayed_version"] is None  # nothing acknowledged yet

        await device.send(json.dumps({"type": "ack", "version": 2}))
        acked = await ui.until(lambda f: f["type"] == "banner" and f["kind"] == "device_acknowledged")
        assert acked["banner"]["device"] == {
            "online": True,
            "last_seen": acked["banner"]["device"]["last_seen"],
            "displayed_version": 2,
        }
        assert acked["banner"]["display_version"] == 2
    finally:
        await device.close()
        await ui.close()
    await eventually(lambda: any(c.kind == "device_offline" for c in server.changes), what="offline on close")
    after = await banner(server, "b1")
    assert after["device"]["online"] is False and after["device"]["displayed_version"] == 2


async def test_reconnect_catches_up_with_the_current_display(server):
    token = await register(server, "b1")
    device = await connect_device(server, "b1", token)
    await recv(device)
    await device.close()
    await eventually(lambda: any(c.kind == "device_offline" for c in server.changes), what="offline")
    await server.client.post("/api/v1/banners/b1/message", json={"text": "while you were away"})

    device = await connect_device(server, "b1", token)
    try:
        display = await recv(device)
        assert display["version"] == 2 and display["text"] == "while you were away"
    finally:
        await device.close()


async def test_heartbeats_cost_no_writes(server):
    token = await register(server, "b1")
    device = await connect_device(server, "b1", token)
    try:
        await recv(device)
        await eventually(lambda: any(c.kind == "device_online" for c in server.changes), what="online")
        before = (await banner(server, "b1"))["version"]
        changes_before = len(server.changes)
        for _ in range(20):
            await device.send('{"type": "heartbeat"}')
        await device.send(json.dumps({"type": "ack", "version": 1}))  # a real change, to know all were read
        await eventually(lambda: len(server.changes) > changes_before, what="the ack")
        assert [c.kind for c in server.changes[changes_before:]] == ["device_acknowledged"]
        assert (await banner(server, "b1"))["version"] == before + 1
    finally:
        await device.close()


@pytest.mark.parametrize(
    ("banner_id", "token", "code"),
    [
        ("b1", "wrong-token", 4401),
        ("b1", None, 4401),
        ("b1", "", 4401),
        ("b2", "TOKEN-OF-B1", 4401),
        ("nope", "x", 4404),
    ],
    ids=["wrong token", "no header", "empty token", "another banner's token", "unknown banner"],
)
async def test_bad_credentials_are_rejected_and_change_nothing(server, banner_id, token, code):
    token_b1 = await register(server, "b1")
    await register(server, "b2")
    before = {b: await banner(server, b) for b in ("b1", "b2")}
    device = await connect_device(server, banner_id, token_b1 if token == "TOKEN-OF-B1" else token)
    assert await closed_with(device) == code
    assert {b: await banner(server, b) for b in ("b1", "b2")} == before


async def test_malformed_frame_gets_an_error_and_a_close(server):
    token = await register(server, "b1")
    device = await connect_device(server, "b1", token)
    await recv(device)
    await device.send("this is not json")
    error = await recv(device)
    assert error["type"] == "error" and "malformed" in error["detail"]
    assert await closed_with(device) == 4400


@pytest.mark.parametrize(
    "frame",
    [
        '{"type": "reboot"}',
        '{"type": "ack"}',
        '{"type": "ack", "version": "two"}',
        '{"type": "ack", "version": 99}',
    ],
    ids=["unknown type", "ack without version", "ack version not a number", "ack of a version never sent"],
)
async def test_invalid_frames_get_an_error_and_change_nothing(server, frame):
    token = await register(server, "b1")
    device = await connect_device(server, "b1", token)
    try:
        await recv(device)
        await eventually(lambda: any(c.kind == "device_online" for c in server.changes), what="online")
        before = await banner(server, "b1")
        await device.send(frame)
        assert (await recv(device))["type"] == "error"
        await device.send('{"type": "heartbeat"}')  # still connected
        assert await banner(server, "b1") == before
    finally:
        await device.close()


@pytest.mark.parametrize("grace", [0.0, 60.0])
async def test_missed_heartbeats_turn_the_banner_offline_for_ui_subscribers(start_server, grace):
    """A silent device is offline at its timeout, whatever the offline grace (it has had its time)."""
    server = await start_server(device_timeout=0.3, device_offline_grace=grace)
    token = await register(server, "b1")
    ui = await StreamClient.connect(server, "?banners=b1")
    device = await connect_device(server, "b1", token)
    try:
        await recv(device)
        online = await ui.until(lambda f: f["type"] == "banner" and f["kind"] == "device_online")
        assert online["banner"]["device"]["online"] is True
        offline = await ui.until(lambda f: f["type"] == "banner" and f["kind"] == "device_offline")
        assert offline["banner"]["device"]["online"] is False
        assert await closed_with(device) == 4408
    finally:
        await ui.close()


async def test_second_connection_replaces_the_first(server):
    token = await register(server, "b1")
    first = await connect_device(server, "b1", token)
    await recv(first)
    second = await connect_device(server, "b1", token)
    await recv(second)
    assert await closed_with(first) == 4409
    await server.client.post("/api/v1/banners/b1/message", json={"text": "to the new link"})
    assert (await recv(second))["text"] == "to the new link"
    assert (await banner(server, "b1"))["device"]["online"] is True
    await second.close()


async def test_rotated_token_replaces_the_old_one(server):
    old = await register(server, "b1")
    rotated = await server.client.post("/api/v1/banners/b1/device-token")
    assert rotated.status_code == 201
    new = rotated.json()["device_token"]
    assert new != old
    assert await closed_with(await connect_device(server, "b1", old)) == 4401
    device = await connect_device(server, "b1", new)
    assert (await recv(device))["type"] == "display"
    await device.close()
    assert (await server.client.post("/api/v1/banners/nobody/device-token")).status_code == 404


async def test_refuse_policy_answers_503_for_offline_banners(start_server):
    server = await start_server(offline_policy="refuse")
    token = await register(server, "b1")
    refused = await server.client.post("/api/v1/banners/b1/message", json={"text": "anyone?"})
    assert refused.status_code == 503 and refused.json()["type"].endswith("/banner-offline")
    assert (await banner(server, "b1"))["version"] == 1
    device = await connect_device(server, "b1", token)
    try:
        await recv(device)
        await eventually(lambda: any(c.kind == "device_online" for c in server.changes), what="online")
        assert (
            await server.client.post("/api/v1/banners/b1/message", json={"text": "now"})
        ).status_code == 201
    finally:
        await device.close()


async def test_accept_policy_queues_for_offline_banners(server):
    token = await register(server, "b1")
    accepted = await server.client.post("/api/v1/banners/b1/message", json={"text": "later"})
    assert accepted.status_code == 201
    device = await connect_device(server, "b1", token)
    try:
        assert (await recv(device))["text"] == "later"
    finally:
        await device.close()


async def test_deleting_a_banner_ends_its_device_link(server):
    token = await register(server, "b1")
    device = await connect_device(server, "b1", token)
    await recv(device)
    await server.client.delete("/api/v1/banners/b1")
    assert await closed_with(device) == 4404


async def test_rotating_the_token_cuts_a_link_that_used_the_old_one(server):
    old = await register(server, "b1")
    ui = await StreamClient.connect(server, "?banners=b1")
    device = await connect_device(server, "b1", old)
    try:
        await recv(device)
        await ui.until(lambda f: f["type"] == "banner" and f["kind"] == "device_online")
        rotated = await server.client.post("/api/v1/banners/b1/device-token")
        assert rotated.status_code == 201
        assert await closed_with(device) == 4401
        offline = await ui.until(lambda f: f["type"] == "banner" and f["kind"] == "device_offline")
        assert offline["banner"]["device"]["online"] is False
        assert not server.app.state.devices  # no link left to receive displays or send acks
        fresh = await connect_device(server, "b1", rotated.json()["device_token"])
        assert (await recv(fresh))["type"] == "display"
        await fresh.close()
    finally:
        await ui.close()


async def test_shutdown_closes_device_links_with_the_documented_code(start_server):
    server = await start_server()
    device = await connect_device(server, "b1", await register(server, "b1"))
    await recv(device)
    stopping = asyncio.create_task(server.stop())
    code = await closed_with(device)
    await stopping
    assert code == 1012
    assert "| 1012 | service restarting" in DEVICE_DOC.read_text(encoding="utf-8")


async def test_a_rotation_while_the_old_token_is_being_checked_still_cuts_the_link(server, monkeypatch):
    """The token check is held open (a wrapper around the real runtime's) until the rotation is done,
    the one order that a rotation cannot find the link in."""
    old = await register(server, "b1")
    checked, rotated = asyncio.Event(), asyncio.Event()
    authenticate = server.runtime.authenticate_device

    async def held_open(banner_id: str, token: str):
        banner = await authenticate(banner_id, token)
        checked.set()
        await rotated.wait()
        return banner

    monkeypatch.setattr(server.runtime, "authenticate_device", held_open)
    device = await connect_device(server, "b1", old)  # accepted; the token check is under way
    await asyncio.wait_for(checked.wait(), FRAME_WAIT)
    assert (await server.client.post("/api/v1/banners/b1/device-token")).status_code == 201
    rotated.set()
    assert await closed_with(device) == 4401
    assert (await banner(server, "b1"))["device"]["online"] is False


@pytest.mark.parametrize(
    "frame",
    ['{"type": "heartbeat"}', '{"type": "ack", "version": 1}', '{"type": "ack", "version": 99}'],
    ids=["heartbeats", "acks", "acks answered with errors"],
)
async def test_a_flood_of_frames_is_closed_with_the_documented_code(server, frame):
    """Issue 18: a link alternating acks wrote ~80,000 rows in 5 s; now its frames have a budget."""
    token = await register(server, "b1")
    device = await connect_device(server, "b1", token)
    await recv(device)
    with contextlib.suppress(ConnectionClosed):
        for _ in range(FLOOD_FRAMES):
            await device.send(frame)
            await asyncio.sleep(0)  # a yield, so the client reads the close frame once it comes
    assert await closed_with(device) == 4429
    assert "| 4429 |" in DEVICE_DOC.read_text(encoding="utf-8")
    await eventually(lambda: not server.app.state.devices, what="the link to be gone")
    after = await banner(server, "b1")
    assert after["device"]["online"] is False
    assert after["version"] <= 4  # created, online, at most one ack, offline
    metrics = (await server.client.get("/metrics")).text
    assert "airdisplay_device_links_over_budget_total 1.0" in metrics


async def test_a_link_may_spend_its_whole_burst_at_once(server):
    token = await register(server, "b1")
    device = await connect_device(server, "b1", token)
    try:
        await recv(device)
        for _ in range(DEVICE_FRAME_BURST - 1):
            await device.send('{"type": "heartbeat"}')
        await device.send(json.dumps({"type": "ack", "version": 99}))  # the last frame of the burst
        assert (await recv(device))["type"] == "error"  # answered, not closed
        assert server.app.state.devices
    finally:
        await device.close()
    metrics = (await server.client.get("/metrics")).text
    assert "airdisplay_device_links_over_budget_total 0.0" in metrics


def test_the_frame_budget_refills_at_its_rate_up_to_the_burst():
    now = [0.0]
    budget = FrameBudget(DEVICE_FRAMES_PER_SECOND, DEVICE_FRAME_BURST, clock=lambda: now[0], overdraw=True)
    assert all(budget.spend() for _ in range(DEVICE_FRAME_BURST))
    assert not budget.spend()
    now[0] += 2.0 / DEVICE_FRAMES_PER_SECOND  # two frames' worth, one of them owed from the overdraft
    assert budget.spend()
    assert not budget.spend()
    now[0] += 3600.0  # an hour of quiet refills the burst, no more
    assert all(budget.spend() for _ in range(DEVICE_FRAME_BURST))
    assert not budget.spend()


def test_firmware_at_the_documented_pace_stays_far_inside_the_budget():
    """A heartbeat every 10 s plus an ack for a display change every second, for a simulated day."""
    now = [0.0]
    budget = FrameBudget(DEVICE_FRAMES_PER_SECOND, DEVICE_FRAME_BURST, clock=lambda: now[0], overdraw=True)
    for second in range(24 * 3600):
        now[0] = float(second)
        assert budget.spend()  # the ack
        if second % 10 == 0:
            assert budget.spend()  # the heartbeat


async def test_a_device_back_within_the_offline_grace_marks_nothing(start_server, tmp_path):
    """A link that drops and comes back within `--device-offline-grace` writes no offline and no online
    change; a banner still within its grace at shutdown is marked offline then (seen after a restart)."""
    server = await start_server(device_offline_grace=60.0, data_dir=tmp_path)
    token = await register(server, "b1")
    for _ in range(3):
        device = await connect_device(server, "b1", token)
        assert (await recv(device))["type"] == "display"
        await device.close()
    device = await connect_device(server, "b1", token)
    assert (await recv(device))["type"] == "display"
    kinds = [c.kind for c in server.changes if c.banner_id == "b1"]
    assert kinds.count("device_online") == 1 and "device_offline" not in kinds, kinds
    await device.close()
    await eventually(lambda: len(server.app.state.devices) == 0, what="the link to end")
    assert (await banner(server, "b1"))["device"]["online"] is True  # within its grace
    await server.stop()

    again = await start_server(data_dir=tmp_path)
    assert (await banner(again, "b1"))["device"]["online"] is False


async def test_after_the_offline_grace_the_banner_is_offline(start_server):
    server = await start_server(device_offline_grace=0.2)
    token = await register(server, "b1")
    ui = await StreamClient.connect(server, "?banners=b1")
    device = await connect_device(server, "b1", token)
    try:
        await recv(device)
        await ui.until(lambda f: f["type"] == "banner" and f["kind"] == "device_online")
        await device.close()
        offline = await ui.until(lambda f: f["type"] == "banner" and f["kind"] == "device_offline")
        assert offline["banner"]["device"]["online"] is False
    finally:
        await ui.close()
