"""Banner rules: pure functions, a fixed clock."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

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
from airdisplay.domain.banner import MAX_MARKS_PER_CHARACTER, SUBMISSION_LOG_SIZE

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


@pytest.mark.parametrize(
    ("text", "characters"),
    [
        ("\U0001f1eb\U0001f1f7" * 33, 33),  # 66 code points: each flag is two regional indicators
        ("\U0001f44d\U0001f3fd" * 64, 64),  # thumbs up with a skin tone
        ("e\u0301" * 64, 64),  # decomposed accents, composed by NFC
        ("\u0928\u092e\u0938\u094d\u0924\u0947 " * 12, 48),  # namaste: 6 code points, 3 characters, a space
        ("1\ufe0f\u20e3" * 64, 64),  # keycap one
    ],
)
def test_the_limit_counts_characters_as_people_see_them(text, characters):
    banner = submit(register_banner("b", "B", T0), text).banner
    assert banner.message is not None and banner.message.text == unicodedata.normalize("NFC", text).strip()
    with pytest.raises(InvalidMessageText, match=f"has {characters + 1} characters"):
        submit(register_banner("b", "B", T0), text + "x", rules=BannerRules(max_text_length=characters))


@pytest.mark.parametrize(
    "text",
    [
        "\u3164",
        "\u2800\u2800",
        "\u034f",
        "\u17b4\u17b5",
        "\ufe0f",
        "\u115f\u1160",
        "\uffa0",
        " \u2800 \u3164 ",
    ],
)
def test_text_with_nothing_visible_is_refused(text):
    with pytest.raises(InvalidMessageText, match="nothing visible"):
        submit(register_banner("b", "B", T0), text)


@pytest.mark.parametrize("text", ["hi\u3164there", "\u2800x", "\u0301", "ok \U0001f44d"])
def test_text_with_something_visible_among_blanks_is_accepted(text):
    banner = submit(register_banner("b", "B", T0), text).banner
    assert banner.message is not None


def test_a_character_may_carry_a_few_marks_but_not_a_tower_of_them():
    # x: no precomposed x with an accent exists, so NFC leaves every mark on it
    four_marks = "x" + "\u0301\u0316\u0302\u0317"
    assert submit(register_banner("b", "B", T0), four_marks).banner.message is not None
    eight = "x" + "\u0300\u0316" * (MAX_MARKS_PER_CHARACTER // 2)
    assert submit(register_banner("b", "B", T0), eight).banner.message is not None
    with pytest.raises(InvalidMessageText, match="carries 63 combining marks; a banner shows at most 8"):
        submit(register_banner("b", "B", T0), "x" + "\u0301" * 63)
    with pytest.raises(InvalidMessageText, match="carries 9 combining marks"):
        submit(register_banner("b", "B", T0), eight + "\u0317")


#: Code points that join others (marks, a virama, conjoining jamo, regional indicators, a skin tone, a
#: keycap, a variation selector) and some they join; mixed with any printable code point.
JOINING = st.sampled_from(
    list("\u0301\u0316\u094d\u0915\u0937\u0e35\u0e48\u1100\u1161\u11a8\uac00\ufe0f\u20e3")
    + ["\U0001f1eb", "\U0001f1f7", "\U0001f44d", "\U0001f3fd", "a", " "]
)
PRINTABLE = st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))


@settings(derandomize=True, database=None, max_examples=500)
@given(st.text(JOINING, min_size=1, max_size=12) | st.text(JOINING | PRINTABLE, min_size=1, max_size=12))
def test_the_count_without_segmenting_agrees_with_segmenting(raw):
    """Texts whose code points all stand alone skip segmentation; any text counts as `\\X` segments it."""
    wide = BannerRules(max_text_length=1000)
    try:
        text = wide.clean_text(raw)
    except InvalidMessageText:
        return
    characters = len(regex.findall(r"\X", text))
    assert BannerRules(max_text_length=characters).clean_text(raw) == text
    if characters > 1:
        # a text of many code points may be refused sooner, as longer than any character count could be
        with pytest.raises(InvalidMessageText, match=f"has {characters} characters|far too long"):
            BannerRules(max_text_length=characters - 1).clean_text(raw)


def test_a_text_longer_than_any_banner_could_show_is_refused_before_it_is_segmented():
    with pytest.raises(InvalidMessageText, match="far too long: a banner shows at most 64 characters"):
        submit(register_banner("b", "B", T0), "\u00e9" * 64 * (MAX_MARKS_PER_CHARACTER + 1) + "\u00e9")


@pytest.mark.parametrize(
    "text",
    [
        "\u0915\u093e\u0930\u094d\u0924\u094d\u0938\u094d\u0928\u094d\u092f",  # Sanskrit: 8 marks
        "\u05e9\u05b8\u05bc\u05c1\u0596",  # pointed Hebrew with a cantillation mark
        "\u0f56\u0f66\u0f92\u0fb2\u0f74\u0f56\u0f66",  # Tibetan stack
        "Vi\u1ec7t Nam",
        "\u0e01\u0e35\u0e48",  # Thai: vowel and tone mark
    ],
)
def test_real_writing_stays_within_the_marks_limit(text):
    assert submit(register_banner("b", "B", T0), text).banner.message is not None


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


def test_a_retry_is_replayed_even_after_the_text_rules_tightened():
    """The replay answers what was accepted: an operator lowering the limit between a submit and its retry
    must not turn the retry into a 422 (the client would think its message was refused)."""
    text = "  Up, up and away  "
    first = submit(register_banner("b", "B", T0), text, idempotency_key="k1")
    tighter = BannerRules(max_text_length=5)
    retry = submit(first.banner, text, log=first.log, idempotency_key="k1", mid="m2", rules=tighter)
    assert retry.replayed and retry.banner == first.banner
    with pytest.raises(InvalidMessageText):
        submit(first.banner, text, log=first.log, idempotency_key="k2", mid="m3", rules=tighter)


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
