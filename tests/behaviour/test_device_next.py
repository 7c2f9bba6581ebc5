"""The next booking sent ahead to a banner's device (`?next=1`, docs/device-protocol.md), on every runtime
of tests/behaviour/conftest.py; firmware that did not ask gets the frames it always got."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta

import websockets

from tests.conftest import FRAME_WAIT, recv

SLOT = timedelta(seconds=60)


async def connect(service, banner_id: str, token: str, query: str = "?next=1"):
    url = service.url.replace("http://", "ws://") + f"/api/v1/devices/{banner_id}/connect{query}"
    return await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"})


async def book(service, banner_id: str, text: str) -> dict:
    response = await service.client.post(f"/api/v1/banners/{banner_id}/bookings", json={"text": text})
    assert response.status_code == 202, response.text
    return response.json()


async def nothing_more(ws) -> None:
    """No frame within a short wait (after a round trip the server answers, so this is not a sleep)."""
    await ws.send(json.dumps({"type": "ack", "version": 10_000}))  # answered with an error frame
    frame = json.loads(await asyncio.wait_for(ws.recv(), FRAME_WAIT))
    assert frame["type"] == "error", frame


def times(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_the_device_gets_the_next_booking_ahead_and_each_change_of_it(service):
    token = (await service.create("b1")).json()["device_token"]
    device = await connect(service, "b1", token)
    try:
        assert await recv(device) == {
            "type": "display",
            "version": 1,
            "text": None,
            "expires_at": None,
            "next": None,
        }
        shown = (await service.client.post("/api/v1/banners/b1/message", json={"text": "now"})).json()
        display = await recv(device)
        assert (display["version"], display["text"], display["next"]) == (2, "now", None)

        first = await book(service, "b1", "next up ✈")
        ahead = await recv(device)  # the same display version, now with what follows it
        assert (ahead["version"], ahead["text"], ahead["expires_at"]) == (
            2,
            "now",
            shown["message"]["expires_at"],
        )
        assert ahead["next"] == {
            "text": "next up ✈",
            "starts_at": first["starts_at"],
            "expires_at": (times(first["starts_at"]) + SLOT).isoformat().replace("+00:00", "Z"),
        }
        assert times(first["starts_at"]) == times(shown["message"]["expires_at"])

        await book(service, "b1", "after that")  # the second in line changes nothing the device needs
        await nothing_more(device)

        cancelled = await service.client.delete(
            f"/api/v1/banners/b1/bookings/{first['booking_id']}",
            headers={"Cancel-Token": first["cancel_token"]},
        )
        assert cancelled.status_code in (200, 204), cancelled.text
        moved_up = await recv(device)
        assert moved_up["version"] == 2 and moved_up["next"]["text"] == "after that"
        assert moved_up["next"]["starts_at"] == shown["message"]["expires_at"]

        cleared = await service.client.delete("/api/v1/banners/b1/message")  # the next booking starts now
        assert cleared.status_code == 200, cleared.text
        started = await recv(device)
        assert (started["version"], started["text"], started["next"]) == (3, "after that", None)
    finally:
        await device.close()


async def test_a_device_connecting_while_bookings_wait_gets_the_next_at_once(service):
    token = (await service.create("b1")).json()["device_token"]
    await service.client.post("/api/v1/banners/b1/message", json={"text": "now"})
    booked = await book(service, "b1", "waiting")
    device = await connect(service, "b1", token)
    try:
        frame = await recv(device)
        assert frame["text"] == "now"
        assert frame["next"]["text"] == "waiting" and frame["next"]["starts_at"] == booked["starts_at"]
    finally:
        await device.close()


async def test_firmware_that_did_not_ask_gets_no_next_and_no_frame_for_a_booking(service):
    token = (await service.create("b1")).json()["device_token"]
    device = await connect(service, "b1", token, query="")
    try:
        assert "next" not in await recv(device)
        await service.client.post("/api/v1/banners/b1/message", json={"text": "now"})
        assert await recv(device) == {
            "type": "display",
            "version": 2,
            "text": "now",
            "expires_at": (await service.client.get("/api/v1/banners/b1")).json()["message"]["expires_at"],
        }
        await book(service, "b1", "secret until it shows")
        await nothing_more(device)
    finally:
        await device.close()


async def test_the_next_text_stays_off_the_public_streams(service):
    await service.create("b1")
    await service.client.post("/api/v1/banners/b1/message", json={"text": "now"})
    await book(service, "b1", "not public yet")
    queued = await service.wait_for_change("b1", "booking_queued")
    assert queued.upcoming is not None and queued.upcoming.text == "not public yet"
    assert b"not public yet" not in queued.json
    public = (await service.client.get("/api/v1/banners/b1")).text
    assert "not public yet" not in public
