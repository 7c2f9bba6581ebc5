"""Banner change events: the bus that carries them and the frames that go on the wire."""

from ._bus import EventBus, Handler, InProcessEventBus
from ._codec import change_from_json, change_to_bytes, change_to_json
from ._frames import Published, banner_frame, legacy_banner_json

__all__ = [
    "EventBus",
    "Handler",
    "InProcessEventBus",
    "Published",
    "banner_frame",
    "change_from_json",
    "change_to_bytes",
    "change_to_json",
    "legacy_banner_json",
]
