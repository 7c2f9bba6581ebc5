"""Wire frames for banner events: serialised once per event, the same bytes for every subscriber."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from ..domain import Banner, BannerChanged, ChangeKind, format_time

#: The legacy "no message" time: the original demo's `datetime.min`, as its page and scripts expect it.
_MIN_DATETIME = "0001-01-01T00:00:00"


@dataclass(slots=True)
class Published:
    """A committed change with its frames, built on first use and then shared by all subscribers."""

    change: BannerChanged
    _frame: str | None = field(default=None, repr=False)
    _legacy: str | None = field(default=None, repr=False)

    @property
    def banner_id(self) -> str:
        return self.change.banner_id

    @property
    def version(self) -> int:
        return self.change.version

    @property
    def resets(self) -> bool:
        """A `created` event starts a new life of the id: its versions start again at 1."""
        return self.change.kind is ChangeKind.CREATED

    @property
    def frame(self) -> str:
        """The event frame of docs/realtime.md."""
        if self._frame is None:
            c = self.change
            self._frame = banner_frame(c.kind.value, c.banner_id, c.version, c.banner, c.at, c.banner_json)
        return self._frame

    @property
    def legacy(self) -> str:
        """The original demo's banner object: {id, message, expires} ('' and year 1 when free)."""
        if self._legacy is None:
            self._legacy = legacy_banner_json(self.change.banner_id, self.change.banner)
        return self._legacy


def banner_frame(
    kind: str,
    banner_id: str,
    version: int,
    banner: Banner | None,
    at: datetime,
    banner_json: bytes | None = None,
) -> str:
    """One `banner` frame (docs/realtime.md), built by hand: this runs once per event on the hot path.

    `banner_json` is the banner as JSON when the caller has it (a change carries the bytes its actor
    stored): the frame reuses it instead of serialising the banner again.
    """
    if banner is None:
        body = "null"
    elif banner_json is not None:
        body = banner_json.decode()
    else:
        body = banner.model_dump_json()
    return (
        f'{{"type":"banner","kind":"{kind}","banner_id":{json.dumps(banner_id)},'
        f'"version":{version},"banner":{body},"at":"{format_time(at)}"}}'
    )


def legacy_banner_json(banner_id: str, banner: Banner | None) -> str:
    message, expires = "", _MIN_DATETIME
    if banner is not None and banner.message is not None:
        message, expires = banner.message.text, format_time(banner.message.expires_at)
    return json.dumps({"id": banner_id, "message": message, "expires": expires}, ensure_ascii=False)
