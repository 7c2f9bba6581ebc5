"""The REST API against a real server: registration, messages, expiry, paging, restarts."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter

from airdisplay.domain import format_time
from tests.conftest import eventually


async def test_register_then_read_a_banner(server):
    created = await server.create("n123ab", "Cessna N123AB")
    assert created.headers["location"] == "/api/v1/banners/n123ab"
    assert created.headers["etag"] == '"1"'
    body = (await server.client.get("/api/v1/banners/n123ab")).json()
    assert body["id"] == "n123ab" and body["name"] == "Cessna N123AB"
    assert body["message"] is None and body["version"] == 1


async def test_the_registration_answer_is_the_stored_banner_with_its_token(server):
    """Built from the banner's stored JSON, the answer is what a JSON encoder gives for the same object."""
    created = await server.create("z1", 'Zürich ✈ "north"')
    body = created.json()
    token = body.pop("device_token")
    stored = await server.client.get("/api/v1/banners/z1")
    assert body == stored.json() and len(token) >= 32
    expected = json.dumps({**stored.json(), "device_token": token}, ensure_ascii=False, separators=(",", ":"))
    assert created.content == expected.encode()
    assert created.headers["content-type"] == "application/json"


async def test_registering_an_existing_id_is_a_conflict(server):
    await server.create("b1", "First")
    again = await server.client.post("/api/v1/banners", json={"id": "b1", "name": "Second"})
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert (await server.client.get("/api/v1/banners/b1")).json()["name"] == "First"


async def test_a_bad_id_or_name_is_explained_in_words(server):
    bad_id = await server.client.post("/api/v1/banners", json={"id": "Bad_ID", "name": "x"})
    assert bad_id.status_code == 422
    detail = bad_id.text
    assert "lowercase letters, digits and hyphens" in detail and "[a-z0-9]" not in detail
    long_name = await server.client.post("/api/v1/banners", json={"id": "b1", "name": "n" * 101})
    assert long_name.status_code == 422, "the document and the domain both allow 100 characters"
    spec = (await server.client.get("/openapi.json")).json()
    create = spec["components"]["schemas"]["BannerCreate"]["properties"]
    assert create["name"]["maxLength"] == 100 and create["id"]["pattern"].startswith("^[a-z0-9]")


async def test_unknown_banner_is_404(server):
    response = await server.client.get("/api/v1/banners/nobody")
    assert response.status_code == 404
    assert response.json()["type"].endswith("/banner-not-found")
    message = await server.client.post("/api/v1/banners/nobody/message", json={"text": "hi"})
    assert message.status_code == 404


async def test_two_hundred_simultaneous_submits_give_exactly_one_winner(server):
    await server.create("hot")
    responses = await asyncio.gather(
        *(
            server.client.post("/api/v1/banners/hot/message", json={"text": f"message {i}"})
            for i in range(200)
        )
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 409: 199}
    winner = next(r for r in responses if r.status_code == 201).json()
    refused = [r for r in responses if r.status_code == 409]
    assert all(1 <= int(r.headers["retry-after"]) <= 60 for r in refused)
    assert {r.json()["free_at"] for r in refused} == {winner["message"]["expires_at"]}  # one time format
    current = (await server.client.get("/api/v1/banners/hot")).json()
    assert current["message"]["text"] == winner["message"]["text"] and current["version"] == 2


async def test_message_clears_itself_after_its_duration(start_server):
    server = await start_server(message_seconds=0.3)
    await server.create("b1")
    shown = (await server.client.post("/api/v1/banners/b1/message", json={"text": "brief"})).json()
    expired = await server.wait_for_change("b1", "message_expired")
    assert expired.version == shown["version"] + 1
    assert format_time(expired.at) >= shown["message"]["expires_at"]
    body = (await server.client.get("/api/v1/banners/b1")).json()
    assert body["message"] is None and body["version"] == 3
    again = await server.client.post("/api/v1/banners/b1/message", json={"text": "next"})
    assert again.status_code == 201


async def test_clearing_early_frees_the_banner(server):
    await server.create("b1")
    await server.client.post("/api/v1/banners/b1/message", json={"text": "oops"})
    cleared = await server.client.delete("/api/v1/banners/b1/message")
    assert cleared.status_code == 200 and cleared.json()["message"] is None
    assert (await server.client.post("/api/v1/banners/b1/message", json={"text": "fixed"})).status_code == 201
    assert (await server.client.delete("/api/v1/banners/nobody/message")).status_code == 404


async def test_deleting_a_banner_removes_it_and_its_expiry(server):
    await server.create("b1")
    await server.client.post("/api/v1/banners/b1/message", json={"text": "bye"})
    assert (await server.client.delete("/api/v1/banners/b1")).status_code == 204
    assert (await server.client.get("/api/v1/banners/b1")).status_code == 404
    assert (await server.client.delete("/api/v1/banners/b1")).status_code == 404
    with sqlite3.connect(server.runtime.database) as conn:
        assert conn.execute("SELECT count(*) FROM reminders").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM actor_state").fetchone()[0] == 0
    await eventually(lambda: server.runtime.host.reminders_in_memory == 0, what="expiry to leave memory")
    assert (
        await server.client.post("/api/v1/banners", json={"id": "b1", "name": "Reborn"})
    ).status_code == 201


async def test_listing_pages_through_the_fleet_in_id_order(server):
    ids = [f"b{i:03d}" for i in range(120)]
    await asyncio.gather(*(server.create(i) for i in ids))
    seen, after, pages = [], None, 0
    while True:
        params = {"limit": 50} | ({"after": after} if after else {})
        page = (await server.client.get("/api/v1/banners", params=params)).json()
        seen += [b["id"] for b in page["items"]]
        pages += 1
        after = page["next_after"]
        if after is None:
            break
    assert seen == ids and pages == 3
    default = (await server.client.get("/api/v1/banners")).json()
    assert len(default["items"]) == 50
    assert default["max_text_length"] == 64, "the page's counter reads the configured limit from here"


async def test_retry_with_the_same_idempotency_key_returns_the_original_result(server):
    await server.create("b1")
    headers = {"Idempotency-Key": "order-7781"}
    first = await server.client.post("/api/v1/banners/b1/message", json={"text": "hi"}, headers=headers)
    retry = await server.client.post("/api/v1/banners/b1/message", json={"text": "hi"}, headers=headers)
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json() and retry.headers["idempotent-replayed"] == "true"
    other_text = await server.client.post("/api/v1/banners/b1/message", json={"text": "ho"}, headers=headers)
    assert other_text.status_code == 422
    other_key = await server.client.post(
        "/api/v1/banners/b1/message", json={"text": "hi"}, headers={"Idempotency-Key": "order-7782"}
    )
    assert other_key.status_code == 409


async def test_if_match_guards_against_a_banner_that_moved_on(server):
    await server.create("b1")
    stale = await server.client.post(
        "/api/v1/banners/b1/message", json={"text": "x"}, headers={"If-Match": '"7"'}
    )
    assert stale.status_code == 412 and stale.json()["current_version"] == 1
    fresh = await server.client.post(
        "/api/v1/banners/b1/message", json={"text": "x"}, headers={"If-Match": '"1"'}
    )
    assert fresh.status_code == 201 and fresh.headers["etag"] == '"2"'


async def test_state_and_pending_expiries_survive_a_restart(start_server, tmp_path):
    first = await start_server(message_seconds=1.5)
    await first.create("b1")
    await first.create("b2")
    shown = (await first.client.post("/api/v1/banners/b1/message", json={"text": "persist"})).json()
    await first.stop()

    second = await start_server(message_seconds=1.5)
    body = (await second.client.get("/api/v1/banners/b1")).json()
    assert body["message"] == shown["message"] and body["version"] == 2
    assert (await second.client.get("/api/v1/banners/b2")).json()["version"] == 1
    await second.wait_for_change("b1", "message_expired")
    assert (await second.client.get("/api/v1/banners/b1")).json()["message"] is None


async def test_health_and_readiness(server):
    assert (await server.client.get("/healthz")).json() == {"status": "ok"}
    assert (await server.client.get("/readyz")).json() == {"status": "ready"}


async def test_api_docs_are_served_from_local_assets(server):
    page = (await server.client.get("/docs")).text
    assert "/static/vendor/swagger-ui-bundle.js" in page and "cdn." not in page
    assert (await server.client.get("/static/vendor/swagger-ui-bundle.js")).status_code == 200


async def test_the_page_without_its_scripts_says_so_instead_of_rendering_blank(server, monkeypatch, tmp_path):
    from airdisplay.api.routes import ui

    monkeypatch.setattr(ui, "VENDOR_DIR", tmp_path / "no-vendor")
    for path in ("/", "/docs"):
        page = await server.client.get(path)
        assert page.status_code == 503 and "not installed" in page.text


async def test_the_icon_is_served_where_browsers_look_for_it(server):
    for path in ("/favicon.ico", "/static/favicon.svg"):
        icon = await server.client.get(path)
        assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
        assert icon.text.lstrip().startswith("<svg")


async def test_openapi_describes_the_api(server):
    spec = (await server.client.get("/openapi.json")).json()
    assert {"/api/v1/banners", "/api/v1/banners/{banner_id}", "/api/v1/banners/{banner_id}/message"} <= set(
        spec["paths"]
    )
