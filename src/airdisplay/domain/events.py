"""What happened to a banner: one event per committed change, in version order."""

from __future__ import annotations

import enum
from dataclasses import dataclass
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
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class BannerChanged:
    """A committed change: the banner's new state (None once deleted) at `version`."""

    kind: ChangeKind
    banner_id: str
    version: int
    banner: Banner | None
    at: datetime
