"""A banner's state is written as the bytes of `model_dump_json`, the bytes the dict encoding gave before.

Before, the behaviour stored `banner.model_dump(mode="json")` and the state managers encoded that dict
with `json.dumps(..., separators=(",", ":"), ensure_ascii=False)`; databases and Redis hold those bytes.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from dapr.actor.runtime._state_provider import StateProvider
from dapr.actor.runtime.state_change import ActorStateChange, StateChangeKind
from pydantic import BaseModel

from airdisplay.actors._state import ActorStateManager, decode, encode
from airdisplay.domain import (
    Banner,
    BannerRules,
    SubmissionLog,
    device_acknowledged,
    device_connected,
    register_banner,
    submit_message,
)
from airdisplay.runtimes import EmbeddedRuntime
from airdisplay.runtimes.behaviour import BANNER_KEY, SUBMISSIONS_KEY, banner_of, split_stored
from airdisplay.runtimes.dapr._serializer import PlainJSONSerializer

NOW = datetime(2025, 6, 15, 12, 0, 0, 123456, tzinfo=UTC)


def dict_encoding(model: BaseModel) -> bytes:
    """How a model was stored before: its JSON dict through the state managers' json.dumps."""
    return json.dumps(model.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False).encode()


def banners() -> list[Banner]:
    """Banners in every shape state takes: new, showing (ASCII and not), a device online and acked."""
    new = register_banner("b-1", 'Zürich ✈ Ålesund "north" \\ tail', NOW)
    plain = submit_message(new, SubmissionLog(), "hello", now=NOW, rules=BannerRules(), message_id="m1")
    wide = submit_message(
        new, SubmissionLog(), "Grüße 👋🏽 नमस्ते 🇳🇴", now=NOW, rules=BannerRules(), message_id="m2"
    )
    online = device_connected(wide.banner, NOW + timedelta(seconds=1))
    acked = device_acknowledged(online, online.display_version, NOW + timedelta(seconds=2))
    assert acked is not None
    return [new, plain.banner, wide.banner, online, acked]


@pytest.mark.parametrize("banner", banners(), ids=["new", "ascii", "wide", "online", "acked"])
def test_a_banner_is_stored_as_the_same_bytes_as_before(banner):
    stored = encode(banner.model_dump_json().encode())  # what the behaviour now writes
    assert stored == dict_encoding(banner)
    assert banner_of(decode(dict_encoding(banner))) == banner  # what is on disk loads


def test_the_idempotency_log_is_stored_as_the_same_bytes_as_before():
    banner = banners()[0]
    first = submit_message(
        banner,
        SubmissionLog(),
        "Grüße 👋",
        now=NOW,
        rules=BannerRules(),
        message_id="m1",
        idempotency_key="k1",
    )
    assert first.log.entries
    assert encode(first.log.model_dump_json().encode()) == dict_encoding(first.log)


async def test_state_manager_stores_json_bytes_as_they_are_and_reads_objects_back_as_bytes():
    banner = banners()[2]
    old = dict_encoding(banner)
    manager = ActorStateManager({BANNER_KEY: old, "token": json.dumps("abc").encode()})
    found, value = await manager.try_get_state(BANNER_KEY)
    assert found and value == old and Banner.model_validate_json(value) == banner
    assert await manager.get_state("token") == "abc"  # not an object: decoded as before
    await manager.set_state(BANNER_KEY, banner.model_dump_json().encode())
    assert await manager.get_state(BANNER_KEY) == old  # read in the turn that set it


async def test_banner_and_log_in_the_database_are_the_bytes_a_dict_encoding_gave(tmp_path):
    runtime = EmbeddedRuntime(tmp_path, BannerRules())
    await runtime.start()
    try:
        await runtime.create_banner("b-1", "Zürich ✈ Ålesund")
        outcome = await runtime.submit_message("b-1", "Grüße 👋🏽", idempotency_key="k1")
    finally:
        await runtime.stop()
    conn = sqlite3.connect(tmp_path / "airdisplay.db")
    try:
        rows = dict(conn.execute("SELECT key, value FROM actor_state WHERE actor_id='b-1'").fetchall())
    finally:
        conn.close()
    # The stored value is the public JSON and, while a message shows, its note (behaviour.py NOTE_FIELD).
    public, note = split_stored(rows[BANNER_KEY])
    assert public == dict_encoding(outcome.banner) == outcome.json
    assert note == b"{}"  # no one is known to have sent it here
    log = SubmissionLog.model_validate_json(rows[SUBMISSIONS_KEY])
    assert rows[SUBMISSIONS_KEY] == dict_encoding(log) and log.entries[0].result == outcome.banner


async def test_a_database_written_through_the_dict_encoding_keeps_loading(tmp_path):
    runtime = EmbeddedRuntime(tmp_path, BannerRules())
    await runtime.start()
    await runtime.create_banner("b-1", "Old banner")
    await runtime.stop()
    showing = banners()[2]
    old = showing.model_copy(update={"id": "b-1", "name": "Old banner", "message": None})
    conn = sqlite3.connect(tmp_path / "airdisplay.db")
    with conn:
        conn.execute(
            "UPDATE actor_state SET value=? WHERE actor_id='b-1' AND key=?", (dict_encoding(old), BANNER_KEY)
        )
    conn.close()
    runtime = EmbeddedRuntime(tmp_path, BannerRules())
    await runtime.start()
    try:
        assert await runtime.get_banner("b-1") == old
        outcome = await runtime.submit_message("b-1", "still here")
        assert outcome.banner.version == old.version + 1 and outcome.banner.device == old.device
    finally:
        await runtime.stop()


class _RecordingClient:
    """The SDK's actor client hook, recording the transaction it is asked to save (no daprd needed)."""

    def __init__(self) -> None:
        self.saved: list[bytes] = []

    async def save_state_transactionally(self, actor_type: str, actor_id: str, data: bytes) -> None:
        self.saved.append(data)


async def test_dapr_state_serializer_passes_json_bytes_through_unchanged():
    banner = banners()[2]
    stored = banner.model_dump_json().encode()
    serializer = PlainJSONSerializer()
    assert serializer.serialize(stored) is stored
    client = _RecordingClient()
    provider = StateProvider(client, serializer)  # type: ignore[arg-type]
    await provider.save_state(
        "BannerActor", "b-1", [ActorStateChange(BANNER_KEY, stored, StateChangeKind.update)]
    )
    (body,) = client.saved
    assert b'"value":' + stored + b"}" in body  # the very bytes, not a re-encoding
    assert json.loads(body)[0]["request"]["value"] == banner.model_dump(mode="json")
    assert stored == dict_encoding(banner)  # the same bytes a dict value gave in Redis before


@pytest.mark.parametrize("banner", banners(), ids=["new", "ascii", "wide", "online", "acked"])
def test_a_stored_banner_splits_into_its_json_and_note_with_or_without_one(banner):
    """The value without a note (a banner's JSON ends with its `updated_at`, a string) is its JSON as it
    is; with one, the JSON and the note's JSON; a note that is an empty object too."""
    public = banner.model_dump_json().encode()
    assert split_stored(public) == (public, None)
    for note in (b'{"by":"client:0a1b"}', b"{}"):
        stored = b'%s,"~showing":%s}' % (public[:-1], note)
        assert split_stored(stored) == (public, note)
        assert banner_of(stored) == banner


def test_a_submit_note_is_made_once_per_sender_and_the_kept_ones_are_bounded():
    from airdisplay.domain import history

    history._submit_note.cache_clear()
    first = history.showing_note("client:0a1b")
    assert first == b'{"by":"client:0a1b"}' and history.showing_note("client:0a1b") is first
    assert history.showing_note('odd "sender"') == b'{"by":"odd \\"sender\\""}'
    for i in range(history.SUBMIT_NOTES_KEPT + 10):
        history.showing_note(f"key:k{i}")
    assert history._submit_note.cache_info().currsize <= history.SUBMIT_NOTES_KEPT
    booked = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert history.showing_note("key:k1", booked) == b'{"by":"key:k1","requested_at":"2026-11-30T12:00:00Z"}'
