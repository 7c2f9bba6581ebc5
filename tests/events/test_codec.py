"""A banner change as JSON between processes (events/_codec.py): what a transport sends is what the other
side decodes, the banner's stored bytes go on the wire as they are, and malformed input is refused."""

from __future__ import annotations

import json

import pytest

from airdisplay.domain import ChangeKind, format_time
from airdisplay.events import change_from_json, change_to_bytes, change_to_json
from tests.events.conftest import NOW, deleted, showing, shown


@pytest.mark.parametrize("deleted_", [False, True], ids=["changed", "deleted"])
def test_a_change_goes_on_the_wire_around_the_bytes_it_carries(deleted_):
    banner = showing()
    stored = banner.model_dump_json().encode()
    change = deleted(banner.id, banner.version + 1) if deleted_ else shown(banner)
    wire = change_to_bytes(change)
    assert json.loads(wire) == change_to_json(change)
    assert change_from_json(wire) == change
    assert (b'"banner":null' if deleted_ else b'"banner":' + stored + b",") in wire


def test_a_change_without_carried_bytes_goes_on_the_wire_as_one_with_them():
    banner = showing()
    assert change_to_bytes(shown(banner, carried=False)) == change_to_bytes(shown(banner))


@pytest.mark.parametrize("form", ["dict", "str", "bytes"])
def test_every_form_a_transport_hands_over_decodes_to_the_same_change(form):
    change = shown(showing())
    encoded = {"dict": change_to_json(change), "str": change_to_bytes(change).decode(), "bytes": None}[form]
    decoded = change_from_json(change_to_bytes(change) if encoded is None else encoded)
    assert decoded == change
    assert decoded.kind is ChangeKind.MESSAGE_SHOWN and decoded.at == NOW
    assert decoded.banner == change.banner and decoded.banner is not change.banner


def test_the_json_names_every_field_and_writes_the_time_in_the_one_format():
    banner = showing()
    assert change_to_json(shown(banner)) == {
        "kind": "message_shown",
        "banner_id": banner.id,
        "version": banner.version,
        "banner": banner.model_dump(mode="json"),
        "at": format_time(NOW),
    }


GOOD = change_to_json(shown(showing()))


@pytest.mark.parametrize(
    "data",
    [
        "{not json",
        b"[1, 2]",
        "null",
        {**GOOD, "kind": "renamed"},
        {**GOOD, "version": "two"},
        {**GOOD, "at": "yesterday"},
        {**GOOD, "banner": {"id": "b-1"}},
    ],
    ids=["not JSON", "a list", "null", "unknown kind", "version not a number", "bad time", "bad banner"],
)
def test_malformed_input_is_refused_with_a_value_error(data):
    """As change_from_json's docstring promises (a pydantic ValidationError is a ValueError)."""
    with pytest.raises(ValueError):
        change_from_json(data)


@pytest.mark.parametrize(
    "data",
    [{k: v for k, v in GOOD.items() if k != "kind"}, {**GOOD, "version": None}],
    ids=["a field missing", "version null"],
)
def test_a_change_missing_a_field_is_refused_with_a_value_error(data):
    """As the docstring says (these raised KeyError and TypeError before), so the Dapr pub/sub route drops
    every malformed event by catching ValueError alone."""
    with pytest.raises(ValueError, match="needs kind, banner_id, version and at"):
        change_from_json(data)
