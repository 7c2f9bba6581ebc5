"""Wire frames of banner events (events/_frames.py): the `banner` frame of docs/realtime.md, the same
whether built from the bytes a change carries or from the model, and the legacy API's banner object."""

from __future__ import annotations

import json

import pytest

from airdisplay.domain import BannerChanged, ChangeKind, format_time, register_banner
from airdisplay.events import Published, banner_frame, legacy_banner_json
from tests.events.conftest import NOW, deleted, showing, shown


def test_a_frame_built_from_the_carried_bytes_equals_the_one_built_from_the_model():
    banner = showing()
    carried = banner_frame(
        "message_shown", banner.id, banner.version, banner, NOW, banner.model_dump_json().encode()
    )
    assert carried == banner_frame("message_shown", banner.id, banner.version, banner, NOW)
    assert Published(shown(banner)).frame == Published(shown(banner, carried=False)).frame == carried


def test_the_frame_reuses_the_carried_bytes_instead_of_serialising_the_banner():
    banner = showing()
    marked = b'{"carried":true}'  # not the model's JSON: only a frame that reuses the bytes has it
    frame = banner_frame("message_shown", banner.id, banner.version, banner, NOW, marked)
    assert json.loads(frame)["banner"] == {"carried": True}


def test_the_frame_is_the_banner_frame_of_the_realtime_doc():
    banner = showing()
    assert json.loads(Published(shown(banner)).frame) == {
        "type": "banner",
        "kind": "message_shown",
        "banner_id": "b-1",
        "version": banner.version,
        "banner": banner.model_dump(mode="json"),
        "at": format_time(NOW),
    }


def test_a_deleted_banner_s_frame_carries_null():
    frame = json.loads(Published(deleted("b-1", 3)).frame)
    assert frame["kind"] == "deleted" and frame["version"] == 3 and frame["banner"] is None


def test_frames_are_built_once_and_shared():
    event = Published(shown(showing()))
    assert event.frame is event.frame and event.legacy is event.legacy


@pytest.mark.parametrize("kind", list(ChangeKind), ids=[kind.value for kind in ChangeKind])
def test_only_a_created_event_starts_the_versions_again(kind):
    banner = register_banner("b-1", "One", NOW)
    assert Published(BannerChanged(kind, "b-1", 1, banner, NOW)).resets is (kind is ChangeKind.CREATED)


def test_the_legacy_object_of_a_showing_banner_has_its_text_and_expiry():
    banner = showing()
    assert banner.message is not None
    assert json.loads(legacy_banner_json(banner.id, banner)) == {
        "id": banner.id,
        "message": banner.message.text,
        "expires": format_time(banner.message.expires_at),
    }
    assert banner.message.text in legacy_banner_json(banner.id, banner)  # not \u-escaped


@pytest.mark.parametrize("deleted_", [False, True], ids=["free", "deleted"])
def test_the_legacy_object_of_a_free_or_deleted_banner_is_empty_until_year_one(deleted_):
    banner = None if deleted_ else register_banner("b-1", "One", NOW)
    assert json.loads(legacy_banner_json("b-1", banner)) == {
        "id": "b-1",
        "message": "",
        "expires": "0001-01-01T00:00:00",
    }
