"""What a banner showed (domain/history.py), on every runtime of tests/behaviour/conftest.py."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import httpx

from airdisplay.domain import BannerRules, format_time
from airdisplay.runtimes import EmbeddedRuntime
from airdisplay.runtimes.behaviour import split_stored
from tests.conftest import connect_device, eventually, recv


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def submit(service, banner_id: str, text: str, **headers: str) -> httpx.Response:
    return await service.client.post(
        f"/api/v1/banners/{banner_id}/message", json={"text": text}, headers=headers
    )


async def history(service, banner_id: str, **params: object) -> dict:
    response = await service.client.get(f"/api/v1/banners/{banner_id}/history", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_every_message_shown_is_recorded_with_how_it_ended_newest_first(start_service):
    service = await start_service(message_seconds=1)
    await service.create("b1")
    first = (await submit(service, "b1", "first")).json()["message"]
    await service.wait_for_change("b1", "message_expired")
    second = (await submit(service, "b1", "second")).json()["message"]
    assert (await service.client.delete("/api/v1/banners/b1/message")).status_code == 200
    third = (await submit(service, "b1", "third")).json()["message"]

    page = await history(service, "b1")
    items = page["items"]
    assert [i["message_id"] for i in items] == [third["id"], second["id"], first["id"]]
    assert [i["text"] for i in items] == ["third", "second", "first"]
    assert [i["ended"] for i in items] == [None, "cleared", "expired"]
    assert at(items[2]["shown_at"]) == at(first["shown_at"])
    assert at(items[2]["ended_at"]) == at(first["expires_at"])  # it left when its time was up
    assert items[1]["ended_at"] is not None and at(items[1]["ended_at"]) < at(second["expires_at"])
    assert all(i["banner_id"] == "b1" for i in items)
    # Who sent each: shown to an operator, as anyone is on a loopback server without keys.
    assert len({i["by"] for i in items}) == 1 and items[0]["by"].startswith("client:")


async def test_history_pages_with_a_cursor_and_refuses_a_bad_one(service):
    await service.create("b1")
    ids = []
    for i in range(5):
        ids.append((await submit(service, "b1", f"m{i}")).json()["message"]["id"])
        assert (await service.client.delete("/api/v1/banners/b1/message")).status_code == 200
    first = await history(service, "b1", limit=2)
    second = await history(service, "b1", limit=2, before=first["next"])
    third = await history(service, "b1", limit=2, before=second["next"])
    seen = [i["message_id"] for page in (first, second, third) for i in page["items"]]
    assert seen == ids[::-1] and third["next"] is None
    bad = await service.client.get("/api/v1/banners/b1/history", params={"before": "nonsense"})
    assert bad.status_code == 400 and bad.json()["type"].endswith("/bad-cursor")


async def test_the_message_showing_now_leads_the_first_page_and_the_cursor_goes_on_past_it(service):
    """Its entry is written when it ends; until then the banner's history lists it from the banner."""
    await service.create("b1")
    ids = []
    for i in range(5):
        ids.append((await submit(service, "b1", f"m{i}")).json()["message"]["id"])
        if i < 4:
            assert (await service.client.delete("/api/v1/banners/b1/message")).status_code == 200
    first = await history(service, "b1", limit=2)
    assert [(i["message_id"], i["ended"]) for i in first["items"]] == [(ids[4], None), (ids[3], "cleared")]
    second = await history(service, "b1", limit=2, before=first["next"])
    third = await history(service, "b1", limit=2, before=second["next"])
    seen = [i["message_id"] for page in (first, second, third) for i in page["items"]]
    assert seen == ids[::-1] and third["next"] is None
    whole = await history(service, "b1", limit=10)
    assert [i["message_id"] for i in whole["items"]] == ids[::-1] and whole["next"] is None


async def test_the_fleet_history_lists_a_time_range_with_who_sent_each(start_service):
    key = "k" * 32
    service = await start_service(api_key=key, client_sends_key=True, message_seconds=60)
    for banner_id in ("a1", "b2"):
        await service.create(banner_id)
    started = datetime.now(UTC) - timedelta(seconds=1)
    async with httpx.AsyncClient(base_url=service.url) as anonymous:
        sent = await anonymous.post("/api/v1/banners/a1/message", json={"text": "from anyone"})
        assert sent.status_code == 201
        public = (await anonymous.get("/api/v1/banners/a1/history")).json()["items"]
        assert [(i["text"], i["by"]) for i in public] == [("from anyone", None)]
        refused = await anonymous.get("/api/v1/history")
        assert refused.status_code == 401
    assert (await submit(service, "b2", "from the operator")).status_code == 201
    # A message is in the fleet's history once it ended (its entry is written then); its banner's own
    # history lists it from the start (above).
    for banner_id in ("a1", "b2"):
        assert (await service.client.delete(f"/api/v1/banners/{banner_id}/message")).status_code == 200
    fleet = await service.client.get(
        "/api/v1/history", params={"since": started.isoformat(), "until": datetime.now(UTC).isoformat()}
    )
    assert fleet.status_code == 200, fleet.text
    items = fleet.json()["items"]
    assert [(i["banner_id"], i["text"]) for i in items] == [
        ("a1", "from anyone"),
        ("b2", "from the operator"),
    ]
    anyone, operator = items[0]["by"], items[1]["by"]
    assert anyone.startswith("client:") and "127.0.0.1" not in anyone
    assert operator.startswith("key:")
    empty = await service.client.get("/api/v1/history", params={"until": started.isoformat()})
    assert empty.json()["items"] == []
    backwards = await service.client.get(
        "/api/v1/history", params={"since": datetime.now(UTC).isoformat(), "until": started.isoformat()}
    )
    assert backwards.status_code == 400


async def test_the_devices_ack_is_recorded_with_the_message_it_showed(service):
    token = (await service.create("b1")).json()["device_token"]
    device = await connect_device(service, "b1", token)
    try:
        assert (await recv(device))["type"] == "display"
        shown = (await submit(service, "b1", "on the banner")).json()
        frame = await recv(device)
        assert frame["text"] == "on the banner"
        await device.send(json.dumps({"type": "ack", "version": frame["version"]}))

        async def entry() -> dict:
            return (await history(service, "b1"))["items"][0]

        acked = await eventually(entry, lambda e: e["acked_at"] is not None, what="the ack in the history")
        assert acked["message_id"] == shown["message"]["id"]
        assert at(acked["acked_at"]) >= at(acked["shown_at"])
    finally:
        await device.close()


async def test_a_booking_is_history_once_it_shows(start_service):
    service = await start_service(message_seconds=1)
    await service.create("b1")
    await submit(service, "b1", "first")
    booked = (await service.client.post("/api/v1/banners/b1/bookings", json={"text": "booked"})).json()
    assert "booking_id" in booked, booked

    async def shown_then_expired() -> list:
        return (await history(service, "b1"))["items"]

    items = await eventually(
        shown_then_expired,
        lambda items: len(items) == 2 and items[0]["ended"] == "expired",
        what="the booking shown and ended",
        limit=20,
    )
    assert items[0]["message_id"] == booked["booking_id"] and items[0]["text"] == "booked"
    assert at(items[0]["shown_at"]) == at(items[1]["ended_at"])  # no gap
    assert items[0]["requested_at"] is not None and at(items[0]["requested_at"]) < at(items[0]["shown_at"])


async def test_a_deleted_banner_keeps_its_history(service):
    await service.create("b1")
    shown = (await submit(service, "b1", "last words")).json()["message"]
    assert (await service.client.delete("/api/v1/banners/b1")).status_code == 204
    items = (await history(service, "b1"))["items"]
    assert [(i["message_id"], i["ended"]) for i in items] == [(shown["id"], "deleted")]


async def test_entries_older_than_the_retention_are_pruned_and_newer_ones_kept(service):
    await service.create("b1")
    old = (await submit(service, "b1", "old")).json()["message"]
    assert (await service.client.delete("/api/v1/banners/b1/message")).status_code == 200
    newer = (await submit(service, "b1", "newer")).json()["message"]
    cutoff = (at(old["shown_at"]) + (at(newer["shown_at"]) - at(old["shown_at"])) / 2).timestamp()
    assert await service.runtime.retention.prune_once(cutoff) == 1
    assert [i["message_id"] for i in (await history(service, "b1"))["items"]] == [newer["id"]]
    assert (await service.client.delete("/api/v1/banners/b1/message")).status_code == 200
    since = datetime.fromtimestamp(0, UTC).isoformat()
    fleet = await service.client.get("/api/v1/history", params={"since": since})
    assert [i["message_id"] for i in fleet.json()["items"]] == [newer["id"]]


async def test_an_entry_written_when_its_message_showed_by_an_older_version_is_completed(tmp_path):
    """Before entries were written at the end, the submit wrote one (with who sent it) and the end patched
    it: a message shown then and ending now keeps what that entry held (embedded runtime; its store can
    be written to as the older version did)."""
    runtime = EmbeddedRuntime(tmp_path, BannerRules())
    await runtime.start()
    try:
        await runtime.create_banner("b1", "Banner")
        shown = (await runtime.submit_message("b1", "from before")).banner.message
        assert shown is not None
        # As the older version left it: its entry at show time, and no note in the banner's state.
        older = {
            "message_id": shown.id,
            "text": shown.text,
            "by": "key:older",
            "requested_at": format_time(shown.shown_at),
            "shown_at": format_time(shown.shown_at),
        }
        with sqlite3.connect(tmp_path / "airdisplay.db") as conn:
            row = ("banner", "b1", shown.shown_at.timestamp(), shown.id, json.dumps(older).encode())
            conn.execute(
                "INSERT INTO actor_records (actor_type, actor_id, at, record_id, value) VALUES (?,?,?,?,?)",
                row,
            )
            (value,) = conn.execute(
                "SELECT value FROM actor_state WHERE actor_id='b1' AND key='banner'"
            ).fetchone()
            public, note = split_stored(bytes(value))
            assert note is not None
            conn.execute("UPDATE actor_state SET value=? WHERE actor_id='b1' AND key='banner'", (public,))
        await runtime.stop()
        runtime = EmbeddedRuntime(tmp_path, BannerRules())
        await runtime.start()
        await runtime.clear_message("b1")
        page = await runtime.history("b1", before=None, limit=10)
        assert [(e.message_id, e.by, e.ended) for e in page.items] == [(shown.id, "key:older", "cleared")]
    finally:
        await runtime.stop()
