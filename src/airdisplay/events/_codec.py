"""A banner change as JSON, for transports that carry events between processes (Dapr pub/sub)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..domain import Banner, BannerChanged, ChangeKind, Upcoming, format_time


def change_to_bytes(change: BannerChanged) -> bytes:
    """`change_to_json` as the JSON a transport sends, built around the banner bytes the change carries
    (its actor's stored JSON) instead of serialising the banner again. The transport is the fleet's own
    (its pub/sub), so the next booking's text travels with it, for the banner's device on any replica."""
    upcoming = change.upcoming
    tail = b"" if upcoming is None else b',"upcoming":%s' % _upcoming_json(upcoming)
    return b'{"kind":"%s","banner_id":%s,"version":%d,"banner":%s,"at":"%s"%s}' % (
        change.kind.value.encode(),
        json.dumps(change.banner_id).encode(),
        change.version,
        change.json,
        format_time(change.at).encode(),
        tail,
    )


def change_to_json(change: BannerChanged) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": change.kind.value,
        "banner_id": change.banner_id,
        "version": change.version,
        "banner": None if change.banner is None else change.banner.model_dump(mode="json"),
        "at": format_time(change.at),
    }
    if change.upcoming is not None:
        data["upcoming"] = {"booking_id": change.upcoming.booking_id, "text": change.upcoming.text}
    return data


def _upcoming_json(upcoming: Upcoming) -> bytes:
    return json.dumps(
        {"booking_id": upcoming.booking_id, "text": upcoming.text}, ensure_ascii=False, separators=(",", ":")
    ).encode()


def _upcoming_of(data: Any) -> Upcoming | None:
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("booking_id"), str):
        raise ValueError("upcoming: expected an object with booking_id and text")
    text = data.get("text")
    if not isinstance(text, str):
        raise ValueError("upcoming: expected an object with booking_id and text")
    return Upcoming(data["booking_id"], text)


def change_from_json(data: dict[str, Any] | str | bytes) -> BannerChanged:
    """Decode; raises ValueError (or a pydantic ValidationError, also a ValueError) for anything malformed."""
    if isinstance(data, str | bytes):
        data = json.loads(data)
    if not isinstance(data, dict):
        raise ValueError("a banner change must be a JSON object")
    banner = data.get("banner")
    try:
        return BannerChanged(
            kind=ChangeKind(data["kind"]),
            banner_id=str(data["banner_id"]),
            version=int(data["version"]),
            banner=None if banner is None else Banner.model_validate(banner),
            at=datetime.fromisoformat(data["at"]),
            upcoming=_upcoming_of(data.get("upcoming")),
        )
    except (KeyError, TypeError) as exc:  # a field missing, or of the wrong type (null, a list, ...)
        raise ValueError(f"a banner change needs kind, banner_id, version and at: {exc!r}") from None
