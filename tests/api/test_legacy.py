"""The original demo's API: its page and scripts must work unchanged against AirDisplay."""

from __future__ import annotations

import asyncio
import json
import re

import websockets

from tests.conftest import bearer, eventually

YEAR_ONE = "0001-01-01T00:00:00"
OPERATOR_KEY = "legacy-test-operator-key"


async def test_legacy_list_and_get_use_the_demo_shape(server):
    await server.create("lightning", "Lightning")
    await server.create("sparky", "Sparky")
    listing = (await server.client.get("/banners")).json()
    assert listing == [
        {"id": "lightning", "message": "", "expires": YEAR_ONE},
        {"id": "sparky", "message": "", "expires": YEAR_ONE},
    ]
    assert (await server.client.get("/banner/sparky")).json() == listing[1]
    assert (await server.client.get("/banner/nobody")).status_code == 404


async def test_legacy_post_shows_a_message_and_refuses_a_second_with_409_detail(server):
    await server.create("lightning")
    shown = await server.client.post("/banner/lightning", json={"message": "Hello beach!"})
    assert shown.status_code == 200
    body = shown.json()
    assert body["id"] == "lightning" and body["message"] == "Hello beach!" and body["expires"] > YEAR_ONE
    refused = await server.client.post("/banner/lightning", json={"message": "Me too"})
    assert refused.status_code == 409
    assert "showing a message" in refused.json()["detail"]
    assert (await server.client.get("/api/v1/banners/lightning")).json()["message"]["text"] == "Hello beach!"


async def test_legacy_post_with_bad_input_is_4xx(server):
    await server.create("lightning")
    assert (await server.client.post("/banner/lightning", json={"message": ""})).status_code == 422
    assert (
        await server.client.post(
            "/banner/lightning", content=b"{", headers={"Content-Type": "application/json"}
        )
    ).status_code == 400
    assert (await server.client.post("/banner/nobody", json={"message": "hi"})).status_code == 404


async def test_legacy_ws_sends_the_banner_object_on_every_change(start_server):
    server = await start_server(message_seconds=0.3)
    await server.create("sparky")
    url = server.url.replace("http://", "ws://") + "/ws"
    async with websockets.connect(url) as ws:
        await eventually(
            lambda: len(server.app.state.hub.subscribers) == 1, what="the /ws client to register"
        )
        await server.client.post("/banner/sparky", json={"message": "Waves!"})
        shown = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert shown["id"] == "sparky" and shown["message"] == "Waves!"
        cleared = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert cleared == {"id": "sparky", "message": "", "expires": YEAR_ONE}


async def test_legacy_post_follows_the_submit_policy_like_v1(start_server):
    """An operator key closes operator routes, not submitting (docs/security.md); the legacy POST is a
    submit, so the demo page keeps working on a server with an operator key."""
    server = await start_server(api_key=OPERATOR_KEY)
    created = await server.client.post(
        "/api/v1/banners", json={"id": "sparky", "name": "Sparky"}, headers=bearer(OPERATOR_KEY)
    )
    assert created.status_code == 201
    assert (await server.client.post("/api/v1/banners", json={"id": "x", "name": "X"})).status_code == 401
    shown = await server.client.post("/banner/sparky", json={"message": "open like v1"})
    assert shown.status_code == 200 and shown.json()["message"] == "open like v1"
    await server.client.delete("/api/v1/banners/sparky/message", headers=bearer(OPERATOR_KEY))
    bad = await server.client.post("/banner/sparky", json={"message": "x"}, headers=bearer("dead-key"))
    assert bad.status_code == 401  # a key that is not valid is refused, as on every route
    assert (await server.client.get("/banner/sparky", headers=bearer("dead-key"))).status_code == 401
    assert (await server.client.get("/banner/sparky")).json()["message"] == ""


async def test_legacy_submits_are_counted_in_the_message_metrics_like_v1(start_server, tmp_path):
    (tmp_path / "blocklist.txt").write_text("forbidden\n")
    server = await start_server(blocklist=tmp_path / "blocklist.txt", submit_rate=1, submit_burst=4)
    await server.create("sparky")
    codes = [
        (await server.client.post("/banner/sparky", json={"message": text})).status_code
        for text in ("one", "two", "forbidden", "three", "four")
    ]
    assert codes == [200, 409, 422, 409, 429]
    metrics = (await server.client.get("/metrics")).text
    counted = dict(re.findall(r'^airdisplay_messages_total\{outcome="(\w+)"\} (\S+)$', metrics, re.M))
    assert counted == {"accepted": "1.0", "busy": "2.0", "blocked_text": "1.0", "rate_limited": "1.0"}
