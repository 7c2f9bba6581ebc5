"""Banner rules: pure functions, a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from airdisplay.domain import (
    BannerBusy,
    BannerRules,
    IdempotencyKeyReused,
    InvalidBannerId,
    InvalidBannerName,
    InvalidMessageText,
    SubmissionLog,
    VersionMismatch,
    check_banner_id,
    clear_message,
    expire_message,
    register_banner,
    submit_message,
)
from airdisplay.domain.banner import SUBMISSION_LOG_SIZE

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
RULES = BannerRules()


def submit(banner, text="hello", *, at=T0, log=None, **kw):
    return submit_message(
        banner,
        log or SubmissionLog(),
        text,
        now=at,
        rules=kw.pop("rules", RULES),
        message_id=kw.pop("mid", "m1"),
        **kw,
    )


def test_new_banner_is_free_at_version_one():
    banner = register_banner("n123ab", "  Tail banner ", T0)
    assert (banner.id, banner.name, banner.message, banner.version) == ("n123ab", "Tail banner", None, 1)


def test_message_shows_for_the_display_duration_and_bumps_version():
    outcome = submit(register_banner("b", "B", T0), "  Marry me, Alex!  ")
    message = outcome.banner.message
    assert message is not None and message.text == "Marry me, Alex!"
    assert message.expires_at - message.shown_at == timedelta(seconds=60)
    assert outcome.banner.version == 2 and not outcome.replayed


def test_second_message_is_refused_until_first_expires():
    shown = submit(register_banner("b", "B", T0)).banner
    with pytest.raises(BannerBusy) as refused:
        submit(shown, "other", at=T0 + timedelta(seconds=59.9), mid="m2")
    assert refused.value.free_at == T0 + timedelta(seconds=60)
    later = submit(shown, "other", at=T0 + timedelta(seconds=60), mid="m2").banner
    assert later.message is not None and later.message.text == "other" and later.version == 3


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "x" * 65,
        "bell\x07",
        "new\nline",
        "tab\there",
        "nul\x00",
        "\u202eoverride",
        "zero\u200bwidth",
    ],
)
def test_bad_text_is_refused(text):
    with pytest.raises(InvalidMessageText):
        submit(register_banner("b", "B", T0), text)


def test_text_limit_and_duration_are_configurable():
    rules = BannerRules(max_text_length=5, display_seconds=0.5)
    banner = submit(register_banner("b", "B", T0), "12345", rules=rules).banner
    assert banner.message is not None and banner.message.expires_at == T0 + timedelta(seconds=0.5)
    with pytest.raises(InvalidMessageText, match="at most 5"):
        submit(register_banner("b", "B", T0), "123456", rules=rules)


def test_unicode_text_counts_characters_not_bytes():
    banner = submit(register_banner("b", "B", T0), "✈" * 64).banner
    assert banner.message is not None and len(banner.message.text) == 64


@pytest.mark.parametrize("bad", ["", "UPPER", "has space", "-lead", "trail-", "a" * 65, "dots.x", "ü", "a/b"])
def test_banner_ids_must_be_url_safe_slugs(bad):
    with pytest.raises(InvalidBannerId):
        check_banner_id(bad)


@pytest.mark.parametrize("good", ["a", "n123ab", "fleet-7-left", "0" * 64])
def test_slug_ids_are_accepted(good):
    assert check_banner_id(good) == good


@pytest.mark.parametrize("name", ["", "  ", "x" * 101, "line\nbreak"])
def test_bad_names_are_refused(name):
    with pytest.raises(InvalidBannerName):
        register_banner("b", name, T0)


def test_expiry_is_idempotent_and_only_removes_its_own_message():
    shown = submit(register_banner("b", "B", T0)).banner
    assert expire_message(shown, "other-message", T0) is None
    expired = expire_message(shown, "m1", T0 + timedelta(seconds=60))
    assert expired is not None and expired.message is None and expired.version == 3
    assert expire_message(expired, "m1", T0 + timedelta(seconds=61)) is None


def test_clear_takes_message_off_early_and_is_a_no_op_when_free():
    banner = register_banner("b", "B", T0)
    assert clear_message(banner, T0) is None
    cleared = clear_message(submit(banner).banner, T0 + timedelta(seconds=1))
    assert cleared is not None and cleared.message is None and cleared.version == 3


def test_if_match_refuses_a_stale_version():
    banner = register_banner("b", "B", T0)
    with pytest.raises(VersionMismatch) as mismatch:
        submit(banner, expected_version=7)
    assert (mismatch.value.expected, mismatch.value.actual) == (7, 1)
    assert submit(banner, expected_version=1).banner.version == 2


def test_retry_with_same_idempotency_key_replays_the_original_result():
    first = submit(register_banner("b", "B", T0), idempotency_key="k1")
    retry = submit(first.banner, at=T0 + timedelta(seconds=1), log=first.log, idempotency_key="k1", mid="m2")
    assert retry.replayed and retry.banner == first.banner
    with pytest.raises(IdempotencyKeyReused):
        submit(first.banner, "different", log=first.log, idempotency_key="k1")
    with pytest.raises(BannerBusy):
        submit(first.banner, log=first.log, idempotency_key="k2", mid="m3")


def test_submission_log_stays_bounded():
    banner = register_banner("b", "B", T0)
    log = SubmissionLog()
    for i in range(SUBMISSION_LOG_SIZE + 10):
        at = T0 + timedelta(minutes=2 * i)
        outcome = submit(banner, log=log, at=at, idempotency_key=f"k{i}", mid=f"m{i}")
        banner, log = outcome.banner, outcome.log
    assert len(log.entries) == SUBMISSION_LOG_SIZE
    assert log.find("k0", T0 + timedelta(hours=1)) is None
    assert log.find(f"k{SUBMISSION_LOG_SIZE + 9}", T0 + timedelta(hours=1)) is not None


def test_idempotency_keys_are_forgotten_after_a_day():
    outcome = submit(register_banner("b", "B", T0), idempotency_key="k1")
    assert outcome.log.find("k1", T0 + timedelta(hours=23)) is not None
    assert outcome.log.find("k1", T0 + timedelta(hours=25)) is None


def test_going_online_never_makes_a_shown_message_look_unsent():
    from airdisplay.domain import device_acknowledged, device_connected, device_disconnected, display_status

    banner = submit(device_connected(register_banner("b", "B", T0), T0)).banner
    assert display_status(banner) == "sending"
    shown = device_acknowledged(banner, banner.display_version, T0)
    assert shown is not None and display_status(shown) == "showing"
    offline = device_disconnected(shown, T0)
    assert offline is not None and display_status(offline) == "offline"
    back = device_connected(offline, T0)
    assert display_status(back) == "showing"  # what it acknowledged still counts
    assert back.version == shown.version + 2 and back.display_version == shown.display_version


def test_acks_are_idempotent_and_must_name_a_real_display_version():
    from airdisplay.domain import UnknownDisplayVersion, device_acknowledged, device_connected

    banner = device_connected(register_banner("b", "B", T0), T0)
    acked = device_acknowledged(banner, 1, T0)
    assert acked is not None and device_acknowledged(acked, 1, T0) is None
    with pytest.raises(UnknownDisplayVersion):
        device_acknowledged(banner, 2, T0)
    with pytest.raises(UnknownDisplayVersion):
        device_acknowledged(banner, 0, T0)


def test_only_display_changes_bump_the_display_version():
    banner = register_banner("b", "B", T0)
    shown = submit(banner).banner
    cleared = clear_message(shown, T0)
    assert (banner.display_version, shown.display_version) == (1, 2)
    assert cleared is not None and cleared.display_version == 3


def test_refuse_offline_policy():
    from airdisplay.domain import BannerOffline, device_connected

    rules = BannerRules(refuse_offline=True)
    with pytest.raises(BannerOffline):
        submit(register_banner("b", "B", T0), rules=rules)
    assert submit(device_connected(register_banner("b", "B", T0), T0), rules=rules).banner.message is not None
