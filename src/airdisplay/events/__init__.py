"""Banner change events: the bus that carries them and the frames that go on the wire."""

from ._bus import EventBus, Handler, InProcessEventBus
from ._frames import Published, banner_frame, legacy_banner_json

__all__ = ["EventBus", "Handler", "InProcessEventBus", "Published", "banner_frame", "legacy_banner_json"]
