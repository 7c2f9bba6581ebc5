"""The banner actor on the official Dapr SDK, driven through the app's own routes as daprd drives them.

These use the daprd double of tests/runtimes/dapr/double.py (the SDK's real ActorRuntime and DaprActor
routes, the SDK's actor-client hook backed by an in-memory store and reminder scheduler, a per-actor turn
lock) and a real Redis for the fleet directory: fast, and every call the app makes is recorded. The same
behaviour on a real daprd, placement and scheduler: tests/runtimes/dapr/test_real_cluster.py and the
behaviour suite.
"""

from __future__ import annotations

import base64
import inspect
import json

import httpx
import pytest
from dapr.actor.runtime._type_utils import get_dispatchable_attrs
from dapr.serializers import DefaultJSONSerializer

from airdisplay.runtimes.behaviour import BannerBehaviour
from airdisplay.runtimes.dapr import BannerActor, PlainJSONSerializer
from tests.conftest import StreamClient, eventually


@pytest.fixture
async def dapr_server(start_server):
    return await start_server(runtime="dapr", message_seconds=60)


def test_sdk_default_serializer_mangles_banner_text_and_ours_does_not():
    """The pitfall itself, shown on the SDK's own serializer, next to ours."""
    payload = json.dumps({"text": "5m", "when": "2026-01-01"}).encode()
    mangled = DefaultJSONSerializer().deserialize(payload)
    assert mangled["text"] != "5m"  # the SDK turned it into a timedelta
    assert PlainJSONSerializer().deserialize(payload) == {"text": "5m", "when": "2026-01-01"}
    assert PlainJSONSerializer().deserialize(b"") is None


async def test_app_serves_daprd_config_and_subscription(dapr_server):
    config = (await dapr_server.client.get("/dapr/config")).json()
    assert config["entities"] == ["BannerActor"]
    # A minute, not Dapr's hour: idle banner actors leave the app's memory.
    assert config["actorIdleTimeout"] == "0h1m0s0ms0μs" and config["actorScanInterval"] == "0h0m10s0ms0μs"
    subscriptions = (await dapr_server.client.get("/dapr/subscribe")).json()
    assert subscriptions[0]["pubsubname"] == "pubsub" and subscriptions[0]["topic"] == "banner-changes"
    assert dapr_server.daprd.calls[:2] == ["GET /dapr/config", "GET /dapr/subscribe"]


async def test_actor_methods_answer_with_envelopes_on_the_sdk_routes(dapr_server):
    client = dapr_server.client
    created = await client.put("/actors/BannerActor/b1/method/register", json={"name": "Direct"})
    assert created.status_code == 200 and created.json()["ok"] is True
    assert created.json()["value"]["banner"]["version"] == 1
    missing = (await client.put("/actors/BannerActor/nobody/method/get", json={})).json()
    assert missing == {
        "ok": False,
        "error": {
            "kind": "BannerNotFound",
            "detail": "banner 'nobody' is not registered",
            "banner_id": "nobody",
        },
    }
    assert (await client.delete("/actors/BannerActor/b1")).status_code == 200  # daprd deactivating it
    again = (await client.put("/actors/BannerActor/b1/method/get", json={})).json()
    assert again["ok"] and again["value"]["name"] == "Direct"  # reactivated from the state store


async def test_calls_go_through_the_sidecar_and_events_come_back_over_pubsub(dapr_server):
    await dapr_server.create("b1")
    stream = await StreamClient.connect(dapr_server, "?banners=b1")
    try:
        await stream.banner_frames("b1", 1)
        await dapr_server.client.post("/api/v1/banners/b1/message", json={"text": "via Dapr"})
        live = (await stream.banner_frames("b1", 1))[0]
        assert live["kind"] == "message_shown" and live["banner"]["message"]["text"] == "via Dapr"
    finally:
        await stream.close()
    calls = dapr_server.daprd.calls
    assert "PUT /v1.0/actors/BannerActor/b1/method/register" in calls
    assert "PUT /v1.0/actors/BannerActor/b1/method/submit" in calls
    kinds = [e["data"]["kind"] for e in dapr_server.daprd.published]
    assert kinds == ["created", "message_shown"]


async def test_expiry_is_a_one_shot_reminder(start_server):
    server = await start_server(runtime="dapr", message_seconds=0.3)
    await server.create("b1")
    shown = (await server.client.post("/api/v1/banners/b1/message", json={"text": "brief"})).json()
    registered = [r for r in server.daprd.reminder_log if r["name"] == "expire"]
    assert len(registered) == 1
    assert registered[0]["period"] is None  # null = fire once; "0h0m0s" would fire forever
    assert base64.b64decode(registered[0]["data"]).decode() == shown["message"]["id"]
    await server.wait_for_change("b1", "message_expired")
    await eventually(lambda: not server.daprd.reminders, what="the one-shot reminder to be gone")


async def test_a_reminder_delivered_four_times_expires_the_message_once(start_server):
    server = await start_server(runtime="dapr", message_seconds=0.3)
    server.daprd.reminder_deliveries = 4  # daprd retries a reminder up to 3 times
    await server.create("b1")
    await server.client.post("/api/v1/banners/b1/message", json={"text": "once"})
    await eventually(
        lambda: server.daprd.calls.count("PUT /actors/BannerActor/b1/method/remind/expire") == 4,
        what="four deliveries",
    )
    await server.wait_for_change("b1", "message_expired")
    assert [e["data"]["kind"] for e in server.daprd.published].count("message_expired") == 1
    assert (await server.client.get("/api/v1/banners/b1")).json()["version"] == 3


async def test_a_failed_turn_leaves_no_cached_partial_state_for_the_next_turn(dapr_server, monkeypatch):
    await dapr_server.create("b1")
    original = BannerActor.publish

    def fail_after_state_changes(self, event):
        raise RuntimeError("crash in the middle of a turn")

    monkeypatch.setattr(BannerActor, "publish", fail_after_state_changes)
    failed = await dapr_server.client.post("/api/v1/banners/b1/message", json={"text": "half done"})
    assert failed.status_code == 503
    monkeypatch.setattr(BannerActor, "publish", original)

    after = (await dapr_server.client.get("/api/v1/banners/b1")).json()  # a read-only turn saves its cache
    assert after["message"] is None and after["version"] == 1
    stored = json.loads(dapr_server.daprd.state[("BannerActor", "b1")]["banner"])
    assert stored["message"] is None and stored["version"] == 1
    assert (
        await dapr_server.client.post("/api/v1/banners/b1/message", json={"text": "whole"})
    ).status_code == 201


async def test_pubsub_delivery_route_fans_out_and_drops_malformed_events(dapr_server):
    await dapr_server.create("b1")
    route = dapr_server.daprd.subscription_route
    bad = await dapr_server.client.post(route, json={"data": {"kind": "nonsense"}})
    assert bad.status_code == 200 and bad.json() == {"status": "DROP"}
    good_event = dict(dapr_server.daprd.published[0])  # redelivery of "created": harmless, idempotent
    again = await dapr_server.client.post(route, json=good_event)
    assert again.json() == {"status": "SUCCESS"}


async def test_daprd_facing_routes_need_the_app_token_when_one_is_set(start_server, monkeypatch):
    server = await start_server(runtime="dapr", app_api_token="from-daprd")
    token = {"dapr-api-token": "from-daprd"}
    # The double does not send the token, so drive the guarded routes directly.
    async with httpx.AsyncClient(base_url=server.url) as client:
        refused = await client.get("/dapr/config")
        assert refused.status_code == 401
        assert refused.headers["x-content-type-options"] == "nosniff"  # inside the app's middleware
        assert (await client.put("/actors/BannerActor/b1/method/get", json={})).status_code == 401
        assert (await client.post("/events/pubsub/banner-changes", json={})).status_code == 401
        # Every path under the daprd-facing prefixes is guarded, not only the routes that exist.
        assert (await client.get("/dapr/no-such-route")).status_code == 401
        assert (await client.get("/dapr/no-such-route", headers=token)).status_code == 404
        ok = await client.put("/actors/BannerActor/b1/method/get", json={}, headers=token)
        assert ok.status_code == 200
        assert (await client.get("/healthz")).status_code == 200  # the app's own routes are not affected
        assert (await client.get("/api/v1/banners")).status_code == 200


def test_the_wire_names_daprd_calls_are_the_names_of_the_banner_turns():
    """One set of operation names for both runtimes: the embedded one calls the BannerBehaviour turns,
    daprd calls the Dapr actor's methods by these names."""
    turns = {
        name
        for name, _ in inspect.getmembers(BannerBehaviour, inspect.iscoroutinefunction)
        if not name.startswith("_") and name != "receive_reminder"  # daprd's own reminder route
    }
    assert set(get_dispatchable_attrs(BannerActor)) == turns


async def test_the_fleet_listing_answers_503_not_500_when_its_redis_fails(dapr_server, monkeypatch):
    """The directory's Redis failing (here: its page read raising what redis-py raises when its pool is
    exhausted, as bench/dapr_compare.py's restart wave met it) is storage trouble: 503, never a 500."""
    from redis.exceptions import MaxConnectionsError

    async def exhausted(*args, **kwargs):
        raise MaxConnectionsError("Too many connections")

    monkeypatch.setattr(dapr_server.runtime.directory, "page", exhausted)
    response = await dapr_server.client.get("/api/v1/banners")
    assert response.status_code == 503 and "Retry-After" in response.headers
    assert response.json()["title"] == "Storage unavailable"
