"""What happened to a banner: one event per committed change, in version order."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from .banner import Banner


class ChangeKind(enum.StrEnum):
    """The kinds of banner change."""

    CREATED = "created"
    MESSAGE_SHOWN = "message_shown"
    MESSAGE_EXPIRED = "message_expired"
    MESSAGE_CLEARED = "message_cleared"
    DEVICE_ONLINE = "device_online"
    DEVICE_OFFLINE = "device_offline"
    DEVICE_ACKNOWLEDGED = "device_acknowledged"
    BOOKING_QUEUED = "booking_queued"
    BOOKING_CANCELLED = "booking_cancelled"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Upcoming:
    """The booking that shows next on a banner, text and all: for the banner's own device, which shows it
    on time even over a slow link (docs/device-protocol.md). Never part of the public banner."""

    booking_id: str
    text: str


@dataclass(frozen=True, slots=True)
class BannerChanged:
    """A committed change: the banner's new state (None once deleted) at `version`.

    `banner_json` is that state as JSON (`model_dump_json`), the very bytes the actor stored, when the
    change carries them: frames and replies reuse them instead of serialising the banner again.

    `upcoming` is the first waiting booking's text, carried by the changes that move the queue (a booking
    queued or cancelled, a message ended and the next started) when a booking waits: devices read it,
    streams never send it. The public `banner.queue` says which booking is first in every change.
    """

    kind: ChangeKind
    banner_id: str
    version: int
    banner: Banner | None
    at: datetime
    banner_json: bytes | None = field(default=None, repr=False, compare=False)
    upcoming: Upcoming | None = field(default=None, repr=False, compare=False)

    @property
    def json(self) -> bytes:
        """The banner as JSON (`null` once deleted): the carried bytes, else serialised now."""
        if self.banner_json is not None:
            return self.banner_json
        return b"null" if self.banner is None else self.banner.model_dump_json().encode()
