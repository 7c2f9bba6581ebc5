"""One behaviour suite, run against three runtimes (tests/behaviour/conftest.py), each behind a real uvicorn
server in the test's loop:

- embedded: banner actors in-process, state in SQLite under tmp_path;
- dapr: the Dapr SDK host behind the daprd double of tests/runtimes/dapr/double.py, with a real Redis for
  the fleet directory;
- dapr-real: the same app behind a real daprd subprocess (built by `make dapr`) joined to the session's
  real placement + scheduler, with actor state, pub/sub and the fleet directory in a real Redis. It skips
  when the binaries are missing, and fails instead when CI is set.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from tests.conftest import StreamClient, connect_device, recv


async def submit(service, banner_id: str, text: str, **headers: str):
    return await service.client.post(
        f"/api/v1/banners/{banner_id}/message", json={"text": text}, headers=headers
    )


async def test_simultaneous_submits_have_exactly_one_winner(service):
    await service.create("hot")
    responses = await asyncio.gather(*(submit(service, "hot", f"m{i}") for i in range(50)))
    assert Counter(r.status_code for r in responses) == {201: 1, 409: 49}
    winner = next(r.json() for r in responses if r.status_code == 201)
    assert (await service.client.get("/api/v1/banners/hot")).json()["message"] == winner["message"]


async def test_every_change_bumps_the_version_by_one_and_is_streamed(service):
    await service.create("b1")
    stream = await StreamClient.connect(service, "?banners=b1")
    try:
        await stream.banner_frames("b1", 1)  # the snapshot
        assert (await submit(service, "b1", "one")).json()["version"] == 2
        assert (await service.client.delete("/api/v1/banners/b1/message")).json()["version"] == 3
        frames = await stream.banner_frames("b1", 2)
        assert [(f["kind"], f["version"]) for f in frames] == [("message_shown", 2), ("message_cleared", 3)]
    finally:
        await stream.close()


async def test_message_expires_on_its_own_exactly_once(start_service):
    service = await start_service(message_seconds=0.5)
    await service.create("b1")
    shown = (await submit(service, "b1", "brief")).json()
    expired = await service.wait_for_change("b1", "message_expired")
    assert expired.version == shown["version"] + 1
    body = (await service.client.get("/api/v1/banners/b1")).json()
    assert body["message"] is None and body["version"] == shown["version"] + 1
    assert sum(1 for c in service.changes if c.kind == "message_expired") == 1


async def test_idempotent_retry_returns_the_original_result(service):
    await service.create("b1")
    first = await submit(service, "b1", "once", **{"Idempotency-Key": "retry-1"})
    again = await submit(service, "b1", "once", **{"Idempotency-Key": "retry-1"})
    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    assert (await submit(service, "b1", "other")).status_code == 409


@pytest.mark.parametrize("text", ["5m", "PT1H", "2026-01-01", "1h30m", "2026-01-01T10:00:00Z", "250ms"])
async def test_text_comes_back_exactly_as_typed(service, text):
    await service.create("b1")
    assert (await submit(service, "b1", text)).json()["message"]["text"] == text
    assert (await service.client.get("/api/v1/banners/b1")).json()["message"]["text"] == text


async def test_conflicts_and_unknown_banners_map_to_the_same_statuses(service):
    await service.create("b1")
    assert (await service.client.post("/api/v1/banners", json={"id": "b1", "name": "x"})).status_code == 409
    assert (await service.client.get("/api/v1/banners/nobody")).status_code == 404
    stale = await submit(service, "b1", "x", **{"If-Match": '"9"'})
    assert stale.status_code == 412
    assert (await submit(service, "b1", "x" * 65)).status_code == 422


async def test_the_fleet_lists_and_searches(service):
    for banner_id, name in [("a1", "Alpha"), ("b2", "Bravo"), ("c3", "Charlie")]:
        await service.create(banner_id, name)
    page = (await service.client.get("/api/v1/banners", params={"limit": 2})).json()
    assert [b["id"] for b in page["items"]] == ["a1", "b2"] and page["next_after"] == "b2"
    rest = (await service.client.get("/api/v1/banners", params={"after": "b2"})).json()
    assert [b["id"] for b in rest["items"]] == ["c3"]
    found = (await service.client.get("/api/v1/banners", params={"q": "char"})).json()
    assert [b["id"] for b in found["items"]] == ["c3"]


async def test_deleting_removes_the_banner_and_its_expiry(service):
    await service.create("b1")
    await submit(service, "b1", "bye")
    assert (await service.client.delete("/api/v1/banners/b1")).status_code == 204
    assert (await service.client.get("/api/v1/banners/b1")).status_code == 404
    await service.wait_for_change("b1", "deleted")
    listing = (await service.client.get("/api/v1/banners")).json()
    assert listing["items"] == []


async def test_acks_that_do_not_advance_write_nothing_and_stream_nothing(service):
    """Issue 18: a device alternating acks of versions 1 and 2 wrote ~80,000 rows in 5 s and sent an event
    for each to every watcher. Now only the acks that advance the acknowledged version are changes."""
    token = (await service.create("b1")).json()["device_token"]
    assert (await submit(service, "b1", "hello")).json()["display_version"] == 2
    stream = await StreamClient.connect(service, "?banners=b1")
    device = await connect_device(service, "b1", token)
    try:
        assert (await recv(device))["version"] == 2
        await stream.until(lambda f: f["type"] == "banner" and f["kind"] == "device_online")
        await device.send(json.dumps({"type": "ack", "version": 1}))
        await device.send(json.dumps({"type": "ack", "version": 2}))
        acked = await stream.until(
            lambda f: f["type"] == "banner" and f["banner"]["device"]["displayed_version"] == 2
        )
        changes = len(service.changes)
        for i in range(40):  # well inside the link's frame budget
            await device.send(json.dumps({"type": "ack", "version": 1 + i % 2}))
        # Frames are handled in order: once this one is answered, every ack before it was.
        await device.send(json.dumps({"type": "ack", "version": 99}))
        assert (await recv(device))["type"] == "error"

        after = (await service.client.get("/api/v1/banners/b1")).json()
        assert after["version"] == acked["version"]
        assert after["device"]["displayed_version"] == 2 and after["display_version"] == 2
        assert service.changes[changes:] == []
        cleared = await service.client.delete("/api/v1/banners/b1/message")
        assert cleared.json()["version"] == acked["version"] + 1
        # The watcher's next banner frame is the clear: no event came for the repeated acks.
        following = await stream.until(lambda f: f["type"] == "banner")
        assert (following["kind"], following["version"]) == ("message_cleared", acked["version"] + 1)
    finally:
        await device.close()
        await stream.close()
