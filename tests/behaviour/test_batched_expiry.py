"""Banner expiries handled in batches by the embedded runtime: the same result as an expiry turn."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from airdisplay.domain import (
    Banner,
    BannerChanged,
    BannerRules,
    ChangeKind,
    SubmissionLog,
    expire_message,
    register_banner,
    submit_message,
)
from airdisplay.runtimes import EmbeddedRuntime
from airdisplay.runtimes.behaviour import BannerBehaviour
from tests.conftest import FakeClock, eventually

NOW = datetime(2025, 6, 15, 12, 0, 0, 123456, tzinfo=UTC)


def showing_banner() -> Banner:
    banner = register_banner("b-1", "Zürich ✈ Ålesund", NOW)
    outcome = submit_message(
        banner, SubmissionLog(), "Grüße 👋", now=NOW, rules=BannerRules(), message_id="m1"
    )
    return outcome.banner


def test_batched_expiry_stores_and_publishes_what_the_expiry_turn_would():
    banner = showing_banner()
    stored = json.dumps(banner.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False).encode()
    later = NOW + timedelta(seconds=60, microseconds=7)
    note = b'{"by":"key:k1","acked_at":"2025-06-15T12:00:01Z"}'
    with_note = stored[:-1] + b',"~showing":' + note + b"}"  # as the banner's turns store it
    result = BannerBehaviour.expire_stored(with_note, "m1", later.timestamp())
    assert result is not None
    value, event, (record_id, at, entry) = result
    # The history entry, whole: the message, its note, ended as expired at the message's own end.
    assert (record_id, at) == ("m1", NOW.timestamp())
    assert json.loads(entry) == {
        "message_id": "m1",
        "text": banner.message.text,
        "by": "key:k1",
        "requested_at": "2025-06-15T12:00:00.123456Z",
        "shown_at": "2025-06-15T12:00:00.123456Z",
        "ended": "expired",
        "ended_at": "2025-06-15T12:01:00.123456Z",
        "acked_at": "2025-06-15T12:00:01Z",
    }
    by_turn = expire_message(banner, "m1", later)
    assert by_turn is not None
    assert json.loads(value) == by_turn.model_dump(mode="json")  # what the state manager would store
    assert event == BannerChanged(ChangeKind.MESSAGE_EXPIRED, "b-1", by_turn.version, by_turn, later)


def test_batched_expiry_is_idempotent():
    banner = showing_banner()
    stored = banner.model_dump_json().encode()
    assert BannerBehaviour.expire_stored(stored, "another-message", NOW.timestamp()) is None
    assert BannerBehaviour.expire_stored(None, "m1", NOW.timestamp()) is None  # deleted meanwhile


async def test_expiries_are_published_once_in_version_order_and_banners_leave_memory(tmp_path):
    clock = FakeClock(NOW.timestamp())
    runtime = EmbeddedRuntime(tmp_path, BannerRules(display_seconds=0.2), idle_timeout=60, clock=clock)
    changes: list[BannerChanged] = []
    runtime.add_listener(changes.append)
    await runtime.start()
    try:
        for i in range(20):
            await runtime.create_banner(f"b{i}", f"Banner {i}")
            await runtime.submit_message(f"b{i}", "first")
        assert runtime.host.active_count == 20  # in memory and idle when their expiries come
        clock.now += 0.3

        def expired() -> int:
            return sum(1 for c in changes if c.kind is ChangeKind.MESSAGE_EXPIRED)

        await eventually(lambda: expired() == 20, what="20 expiries")
        await eventually(lambda: runtime.host.active_count == 0, what="expired banners to leave memory")
        await runtime.submit_message("b3", "second")
        clock.now += 0.3
        await eventually(lambda: expired() == 21, what="the second message's expiry")
        for i in range(20):
            mine = [(c.kind, c.version) for c in changes if c.banner_id == f"b{i}"]
            kinds = [ChangeKind.CREATED, ChangeKind.MESSAGE_SHOWN, ChangeKind.MESSAGE_EXPIRED]
            if i == 3:
                kinds += [ChangeKind.MESSAGE_SHOWN, ChangeKind.MESSAGE_EXPIRED]
            assert mine == [(kind, v) for v, kind in enumerate(kinds, start=1)]
        stored = await runtime.get_banner("b3")
        assert stored.message is None and stored.version == 5 and stored.display_version == 5
    finally:
        await runtime.stop()
