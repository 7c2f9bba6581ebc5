"""Device acks in the domain: only an ack that advances the acknowledged version is a change (issue 18)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airdisplay.domain import (
    BannerRules,
    SubmissionLog,
    clear_message,
    device_acknowledged,
    device_connected,
    device_disconnected,
    register_banner,
    submit_message,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=1)


def _online_at_display_version_2():
    banner = device_connected(register_banner("b", "B", T0), T0)
    outcome = submit_message(banner, SubmissionLog(), "hi", now=T0, rules=BannerRules(), message_id="m1")
    return outcome.banner


def test_alternating_acks_change_nothing_after_the_newest():
    banner = _online_at_display_version_2()
    first = device_acknowledged(banner, 1, T0)
    assert first is not None
    second = device_acknowledged(first, 2, T0)
    assert second is not None and second.device.displayed_version == 2
    for version in (1, 2, 1, 2):
        assert device_acknowledged(second, version, T1) is None


def test_an_ack_of_an_older_version_does_not_lower_what_was_acknowledged():
    banner = device_acknowledged(_online_at_display_version_2(), 2, T0)
    assert banner is not None
    cleared = clear_message(banner, T0)
    assert cleared is not None and cleared.display_version == 3
    assert device_acknowledged(cleared, 1, T1) is None  # late, and behind: the banner stays "sending"
    assert cleared.device.displayed_version == 2


def test_an_old_ack_from_a_device_marked_offline_brings_it_online_without_going_back():
    acked = device_acknowledged(_online_at_display_version_2(), 2, T0)
    assert acked is not None
    offline = device_disconnected(acked, T0)
    assert offline is not None
    back = device_acknowledged(offline, 1, T1)
    assert back is not None and back.device.online and back.device.last_seen == T1
    assert back.device.displayed_version == 2
    assert back.version == offline.version + 1
