"""Booking the next free slot (domain/bookings.py), on every runtime of tests/behaviour/conftest.py, and a
restart with overdue bookings on the embedded runtime (its clock can be moved; Dapr's scheduler cannot)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx

from airdisplay.domain import BannerRules, ChangeKind
from airdisplay.runtimes import EmbeddedRuntime
from tests.conftest import FakeClock, StreamClient, eventually

SECOND = timedelta(seconds=1)


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def submit(service, banner_id: str, text: str) -> httpx.Response:
    return await service.client.post(f"/api/v1/banners/{banner_id}/message", json={"text": text})


async def book(service, banner_id: str, text: str, **headers: str) -> httpx.Response:
    return await service.client.post(
        f"/api/v1/banners/{banner_id}/bookings", json={"text": text}, headers=headers
    )


async def test_a_booking_on_a_free_banner_shows_at_once_as_a_submit_would(service):
    await service.create("b1")
    response = await book(service, "b1", "right away")
    assert response.status_code == 201
    assert response.json()["message"]["text"] == "right away" and response.json()["queue"] == []
    assert response.headers["etag"] == f'"{response.json()["version"]}"'


async def test_bookings_show_back_to_back_in_order_each_from_the_end_of_the_one_before(start_service):
    # Banners leave memory between calls, so the embedded runtime's expiries take the batch path, which
    # hands an expiry with bookings waiting to a turn.
    service = await start_service(message_seconds=1, idle_seconds=0.05)
    await service.create("b1")
    first = (await submit(service, "b1", "first")).json()["message"]
    ends = at(first["expires_at"])
    queued = [await book(service, "b1", f"booked {i}") for i in range(2)]
    assert [q.status_code for q in queued] == [202, 202], [q.text for q in queued]
    bookings = [q.json() for q in queued]
    assert [b["position"] for b in bookings] == [1, 2]
    assert [at(b["starts_at"]) for b in bookings] == [ends, ends + SECOND]
    assert all(b["cancel_token"] for b in bookings)

    def shown() -> list:
        return [c for c in service.changes if c.banner_id == "b1" and c.kind == "message_shown"]

    await eventually(lambda: len(shown()) == 3, what="both bookings shown", limit=20)
    await service.wait_for_change("b1", "message_expired")
    messages = [c.banner.message for c in shown()]
    assert [m.id for m in messages[1:]] == [b["booking_id"] for b in bookings]
    assert [m.text for m in messages] == ["first", "booked 0", "booked 1"]
    # No gap and no overlap, whenever the expiry reminders fired.
    assert [(m.shown_at, m.expires_at) for m in messages[1:]] == [
        (ends, ends + SECOND),
        (ends + SECOND, ends + 2 * SECOND),
    ]
    assert [len(c.banner.queue) for c in shown()] == [0, 1, 0]
    final = (await service.client.get("/api/v1/banners/b1")).json()
    assert final["message"] is None and final["queue"] == []
    versions = [c.version for c in service.changes if c.banner_id == "b1"]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


async def test_200_simultaneous_bookings_take_exactly_the_queue_in_positions_without_gaps(start_service):
    """On a real daprd too: 200 invocations waiting on one actor once held every connection to daprd, and
    its turn waited for one for its state read until the 30 s timeout (runtimes/dapr/_sidecar.py)."""
    callers = 200
    service = await start_service(message_seconds=60, bookings_per_client=0)  # one client books them all
    await service.create("hot")
    ends = at((await submit(service, "hot", "showing")).json()["message"]["expires_at"])
    responses = await asyncio.gather(*(book(service, "hot", f"b{i}") for i in range(callers)))
    assert Counter(r.status_code for r in responses) == {202: 10, 409: callers - 10}
    accepted = sorted((r.json() for r in responses if r.status_code == 202), key=lambda b: b["position"])
    assert [b["position"] for b in accepted] == list(range(1, 11))
    assert len({b["booking_id"] for b in accepted}) == 10
    assert [at(b["starts_at"]) for b in accepted] == [ends + i * 60 * SECOND for i in range(10)]
    refused = next(r for r in responses if r.status_code == 409)
    assert refused.json()["type"].endswith("/queue-full") and int(refused.headers["retry-after"]) > 0
    listing = (await service.client.get("/api/v1/banners/hot/bookings")).json()
    assert [(i["booking_id"], i["position"]) for i in listing["items"]] == [
        (b["booking_id"], b["position"]) for b in accepted
    ]


async def test_a_plain_submit_to_a_banner_with_bookings_waits_for_all_of_them(start_service):
    service = await start_service(message_seconds=60, queue_length=2)
    await service.create("b1")
    ends = at((await submit(service, "b1", "showing")).json()["message"]["expires_at"])
    assert [(await book(service, "b1", f"b{i}")).status_code for i in range(2)] == [202, 202]
    busy = await submit(service, "b1", "me first")
    assert busy.status_code == 409 and busy.json()["type"].endswith("/banner-busy")
    assert at(busy.json()["free_at"]) == ends + 2 * 60 * SECOND
    full = await book(service, "b1", "one more")
    assert full.status_code == 409 and full.json()["type"].endswith("/queue-full")
    assert full.json()["queue_length"] == 2 and at(full.json()["frees_at"]) == ends


async def test_cancelling_moves_later_bookings_up_and_the_stream_hears_it(service):
    await service.create("b1")
    ends = at((await submit(service, "b1", "showing")).json()["message"]["expires_at"])
    first, second, third = [(await book(service, "b1", f"b{i}")).json() for i in range(3)]
    stream = await StreamClient.connect(service, "?banners=b1")
    try:
        await stream.banner_frames("b1", 1)  # the snapshot
        url = f"/api/v1/banners/b1/bookings/{first['booking_id']}"
        wrong = await service.client.delete(url, headers={"Cancel-Token": second["cancel_token"]})
        assert wrong.status_code == 403 and wrong.json()["type"].endswith("/cancel-token-invalid")
        unknown = await service.client.delete(
            f"/api/v1/banners/b1/bookings/{'0' * 32}", headers={"Cancel-Token": "x"}
        )
        assert unknown.status_code == 404 and unknown.json()["type"].endswith("/booking-not-found")
        assert (
            await service.client.delete(url, headers={"Cancel-Token": first["cancel_token"]})
        ).status_code == 204
        (frame,) = await stream.banner_frames("b1", 1)
        assert frame["kind"] == "booking_cancelled"
        assert [(q["id"], at(q["starts_at"])) for q in frame["banner"]["queue"]] == [
            (second["booking_id"], ends),
            (third["booking_id"], ends + 60 * SECOND),
        ]
    finally:
        await stream.close()
    listing = (await service.client.get("/api/v1/banners/b1/bookings")).json()
    assert [(i["booking_id"], i["position"]) for i in listing["items"]] == [
        (second["booking_id"], 1),
        (third["booking_id"], 2),
    ]
    again = await service.client.delete(url, headers={"Cancel-Token": first["cancel_token"]})
    assert again.status_code == 404


async def test_an_operator_clear_starts_the_next_booking_at_once(service):
    await service.create("b1")
    await submit(service, "b1", "showing")
    booked = (await book(service, "b1", "next")).json()
    cleared = (await service.client.delete("/api/v1/banners/b1/message")).json()
    assert cleared["message"]["id"] == booked["booking_id"] and cleared["message"]["text"] == "next"
    assert cleared["queue"] == []
    started = at(cleared["message"]["shown_at"])
    assert at(cleared["message"]["expires_at"]) == started + 60 * SECOND
    assert abs(started - datetime.now(UTC)) < 30 * SECOND


async def test_an_idempotent_booking_replays_its_first_answer_without_the_cancel_token(service):
    await service.create("b1")
    now = await book(service, "b1", "shown", **{"Idempotency-Key": "k-now"})
    again = await book(service, "b1", "shown", **{"Idempotency-Key": "k-now"})
    assert now.status_code == again.status_code == 201 and again.json() == now.json()
    first = await book(service, "b1", "queued", **{"Idempotency-Key": "k-1"})
    retry = await book(service, "b1", "queued", **{"Idempotency-Key": "k-1"})
    assert first.status_code == retry.status_code == 202
    assert retry.headers["idempotent-replayed"] == "true"
    assert {**first.json(), "cancel_token": None} == retry.json()
    other = await book(service, "b1", "other text", **{"Idempotency-Key": "k-1"})
    assert other.status_code == 422
    assert len((await service.client.get("/api/v1/banners/b1/bookings")).json()["items"]) == 1


async def test_only_an_operator_reads_booked_texts_or_cancels_without_a_token(start_service):
    key = "k" * 32
    service = await start_service(api_key=key, client_sends_key=True, message_seconds=60)
    await service.create("b1")
    await submit(service, "b1", "showing")
    async with httpx.AsyncClient(base_url=service.url) as anonymous:
        booked = await anonymous.post("/api/v1/banners/b1/bookings", json={"text": "secret plan"})
        assert booked.status_code == 202
        seen = (await anonymous.get("/api/v1/banners/b1/bookings")).json()["items"]
        assert [(i["booking_id"], i["text"]) for i in seen] == [(booked.json()["booking_id"], None)]
        url = f"/api/v1/banners/b1/bookings/{booked.json()['booking_id']}"
        assert (await anonymous.delete(url)).status_code == 401
    listing = (await service.client.get("/api/v1/banners/b1/bookings")).json()["items"]
    assert [i["text"] for i in listing] == ["secret plan"]
    assert (await service.client.delete(url)).status_code == 204


async def test_a_client_holds_at_most_its_quota_of_waiting_bookings_across_the_fleet(start_service):
    key = "k" * 32
    service = await start_service(
        api_key=key, client_sends_key=True, message_seconds=60, bookings_per_client=2
    )
    for banner_id in ("b1", "b2"):
        await service.create(banner_id)
        await submit(service, banner_id, "showing")
    async with httpx.AsyncClient(base_url=service.url) as anonymous:

        async def book_as_anyone(banner_id: str) -> httpx.Response:
            return await anonymous.post(f"/api/v1/banners/{banner_id}/bookings", json={"text": "hi"})

        results = await asyncio.gather(*(book_as_anyone(b) for b in ("b1", "b2", "b1", "b2", "b1")))
        assert Counter(r.status_code for r in results) == {202: 2, 429: 3}
        refused = next(r for r in results if r.status_code == 429)
        assert (
            refused.json()["type"].endswith("/too-many-bookings") and int(refused.headers["retry-after"]) > 0
        )
        held = next(r.json() for r in results if r.status_code == 202)
        cancelled = await anonymous.delete(
            f"/api/v1/banners/{held['banner_id']}/bookings/{held['booking_id']}",
            headers={"Cancel-Token": held["cancel_token"]},
        )
        assert cancelled.status_code == 204

        async def place_given_back() -> bool:
            return (await book_as_anyone("b2")).status_code == 202

        await eventually(place_given_back, what="the cancelled booking's place back")
    # An operator's key is not held to it.
    assert [(await book(service, "b1", f"op {i}")).status_code for i in range(3)] == [202] * 3


async def test_a_booking_keeps_the_text_rules(service):
    await service.create("b1")
    await submit(service, "b1", "showing")
    assert (await book(service, "b1", "x" * 65)).status_code == 422
    assert (await book(service, "b1", " \t ")).status_code == 422
    assert (await book(service, "nobody", "hello")).status_code == 404
    assert (await service.client.get("/api/v1/banners/b1/bookings")).json()["items"] == []


async def test_booking_off_is_refused_with_its_own_problem(start_service):
    service = await start_service(message_seconds=60, queue_length=0)
    await service.create("b1")
    await submit(service, "b1", "showing")
    off = await book(service, "b1", "later")
    assert off.status_code == 403 and off.json()["type"].endswith("/booking-off")


async def test_a_restart_shows_overdue_bookings_in_order_and_skips_those_whose_slot_has_passed(tmp_path):
    """The server is down through the end of the message and the whole first booking's slot: at restart
    the first is recorded missed, the second shows for the rest of its slot, the third at its own."""
    clock = FakeClock(1_800_000_000.0)
    rules = BannerRules(display_seconds=0.5)
    start = datetime.fromtimestamp(clock.now, UTC)
    slot = timedelta(seconds=0.5)
    runtime = EmbeddedRuntime(tmp_path, rules, clock=clock)
    await runtime.start()
    try:
        await runtime.create_banner("b1", "Banner")
        await runtime.submit_message("b1", "showing")
        booked = [await runtime.book("b1", f"b{i}", by="test") for i in range(3)]
        assert [b.starts_at for b in booked] == [start + slot, start + 2 * slot, start + 3 * slot]
    finally:
        await runtime.stop()
    clock.now += 1.2  # past the first booking's slot (0.5-1.0), within the second's (1.0-1.5)
    runtime = EmbeddedRuntime(tmp_path, rules, clock=clock)
    changes = []
    runtime.add_listener(changes.append)
    await runtime.start()
    try:

        async def showing() -> str | None:
            message = (await runtime.get_banner("b1")).message
            return None if message is None else message.id

        await eventually(lambda: any(c.kind is ChangeKind.MESSAGE_SHOWN for c in changes), what="a start")
        banner = await runtime.get_banner("b1")
        assert banner.message is not None and banner.message.id == booked[1].booking_id
        assert (banner.message.shown_at, banner.message.expires_at) == (start + 2 * slot, start + 3 * slot)
        assert [q.id for q in banner.queue] == [booked[2].booking_id]
        clock.now += 0.4  # 1.6: the third's slot began at 1.5
        await eventually(lambda: len(changes) >= 2, what="the third booking")
        banner = await runtime.get_banner("b1")
        assert banner.message is not None and banner.message.id == booked[2].booking_id
        assert banner.message.shown_at == start + 3 * slot and banner.queue == ()
        clock.now += 0.5
        await eventually(lambda: len(changes) >= 3, what="the end")
        assert [c.kind for c in changes] == [
            ChangeKind.MESSAGE_SHOWN,
            ChangeKind.MESSAGE_SHOWN,
            ChangeKind.MESSAGE_EXPIRED,
        ]
        assert await showing() is None
        # The history says so: the first booking missed its slot, the others showed, each in its own.
        page = await runtime.history("b1", before=None, limit=10)
        entries = {e.message_id: e for e in page.items}
        missed = entries[booked[0].booking_id]
        assert missed.ended == "missed" and missed.shown_at is None and missed.slot_start == start + slot
        assert [(entries[b.booking_id].shown_at, entries[b.booking_id].ended) for b in booked[1:]] == [
            (start + 2 * slot, "expired"),
            (start + 3 * slot, "expired"),
        ]
    finally:
        await runtime.stop()


async def test_the_expiry_of_a_message_with_bookings_behind_it_is_an_urgent_switch(tmp_path):
    """On the embedded runtime a message's expiry is registered as `switch` (fired ahead of plain expiries
    that are due with it: tests/actors/test_reminder_batches.py) exactly while bookings wait behind it,
    and as `expire` otherwise; one registration at a time, and the queue runs through either way."""
    clock = FakeClock(1_800_000_000.0)
    runtime = EmbeddedRuntime(tmp_path, BannerRules(display_seconds=1), clock=clock)

    def reminders() -> list[str]:
        with sqlite3.connect(runtime.database) as conn:
            return [name for (name,) in conn.execute("SELECT name FROM reminders WHERE actor_id = 'b1'")]

    await runtime.start()
    try:
        await runtime.create_banner("b1", "Banner")
        await runtime.submit_message("b1", "showing")
        assert reminders() == ["expire"]
        first = await runtime.book("b1", "first", by="test")
        assert reminders() == ["switch"]
        await runtime.book("b1", "second", by="test")
        assert reminders() == ["switch"]
        clock.now += 1.01  # "first" starts, "second" waits behind it
        await eventually(lambda: runtime.get_banner("b1"), lambda b: b.message.id == first.booking_id)
        assert reminders() == ["switch"]
        clock.now += 1.0  # "second" starts, nothing behind it
        await eventually(lambda: runtime.get_banner("b1"), lambda b: b.message.text == "second")
        assert reminders() == ["expire"]
        third = await runtime.book("b1", "third", by="test")
        assert reminders() == ["switch"]
        await runtime.cancel_booking("b1", third.booking_id, None)
        assert reminders() == ["switch"]  # left as it is: its turn ends the message, with nothing to start
        clock.now += 1.0
        await eventually(lambda: runtime.get_banner("b1"), lambda b: b.message is None)
        assert reminders() == []
        await runtime.submit_message("b1", "again")
        await runtime.book("b1", "fourth", by="test")
        await runtime.clear_message("b1")  # "fourth" starts at once, with nothing behind it
        assert (await runtime.get_banner("b1")).message.text == "fourth"
        assert reminders() == ["expire"]
        await runtime.clear_message("b1")
        assert reminders() == []
    finally:
        await runtime.stop()


async def test_a_banner_with_bookings_waiting_stays_in_memory_until_its_queue_is_empty(tmp_path):
    """On the embedded runtime, so that the turn that starts a booking at its slot waits for no
    activation (a read of the store); a linked device keeps it too, each reason apart from the other."""
    clock = FakeClock(1_800_000_000.0)
    runtime = EmbeddedRuntime(tmp_path, BannerRules(display_seconds=1), clock=clock, idle_timeout=0.05)
    host = runtime.host
    await runtime.start()
    try:
        for banner_id in ("b1", "b2"):
            await runtime.create_banner(banner_id, "Banner")
            await runtime.submit_message(banner_id, "showing")
        await runtime.book("b1", "first", by="test")
        assert host.pinned_count == 1
        await eventually(lambda: host.active_count == 1, what="the banner without bookings to leave memory")
        await runtime.device_online("b1")
        clock.now += 1.01  # "first" starts: nothing waits any more
        await eventually(lambda: runtime.get_banner("b1"), lambda b: b.message.text == "first")
        assert host.pinned_count == 1  # the device still keeps it
        await runtime.device_offline("b1")
        assert host.pinned_count == 0
        await eventually(lambda: host.active_count == 0, what="b1 to leave memory once idle")
        await runtime.book("b2", "later", by="test")
        await runtime.book("b2", "later still", by="test")
        await runtime.delete_banner("b2")
        assert host.pinned_count == 0
    finally:
        await runtime.stop()
