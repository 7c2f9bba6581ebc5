"""Live links to physical banners: at most one per banner, fed with display frames from the event bus.

Failure rules:
- A second connection for a banner replaces the first, which is closed with 4409; only the link that is
  current when it ends marks the banner offline.
- Display frames are versioned by the banner's display version: a device never gets an older display
  after a newer one, and device-side changes (online, ack) send nothing.
- A banner deleted while its device is connected ends the link (4404).
- A new device token ends the link opened with the old one (`revoke`, 4401). Only this process's link:
  a link through another replica lasts until it reconnects.
"""

from __future__ import annotations

import json
import time

from ..domain import Banner, format_time
from ..events import EventBus, Published
from ._subscriber import Subscriber

#: Display frames buffered per device before coalescing; a device needs only the newest display.
DEVICE_SEND_BUFFER = 4


def display_frame(banner: Banner) -> str:
    """What the banner should show now (docs/device-protocol.md)."""
    message = banner.message
    return json.dumps(
        {
            "type": "display",
            "version": banner.display_version,
            "text": message.text if message else None,
            "expires_at": format_time(message.expires_at) if message else None,
        },
        ensure_ascii=False,
    )


class DeviceLink:
    """One connected device: its outbox and when it was last heard from."""

    __slots__ = ("banner_id", "subscriber", "last_heard", "replaced", "deleted", "revoked")

    def __init__(self, banner_id: str) -> None:
        self.banner_id = banner_id
        self.subscriber = Subscriber(DEVICE_SEND_BUFFER)
        self.last_heard = time.monotonic()
        self.replaced = False
        self.deleted = False
        self.revoked = False

    def heard(self) -> None:
        self.last_heard = time.monotonic()

    def silent_for(self) -> float:
        return time.monotonic() - self.last_heard

    def show(self, banner: Banner) -> None:
        self.subscriber.offer(self.banner_id, banner.display_version, display_frame(banner))


class DeviceLinks:
    """The device links of this process, by banner id."""

    def __init__(self, bus: EventBus, *, limit: int = 0) -> None:
        self._links: dict[str, DeviceLink] = {}
        #: Links held at most (0: no limit); a banner's new link replacing its old one always fits.
        self.limit = limit
        #: Counts `revoke` calls: a connect that sees it change while checking its token checks again.
        self.revocations = 0
        bus.subscribe(self._on_event)

    def has_room(self, banner_id: str) -> bool:
        """True if a link for the banner fits under the limit; replacing its own link always fits."""
        return not self.limit or len(self._links) < self.limit or banner_id in self._links

    def attach(self, banner_id: str) -> DeviceLink:
        """A new link for the banner; an existing one is marked replaced and ended."""
        old = self._links.get(banner_id)
        if old is not None:
            old.replaced = True
            old.subscriber.close()
        link = self._links[banner_id] = DeviceLink(banner_id)
        return link

    def revoke(self, banner_id: str) -> None:
        """The banner's device token was replaced: the link opened with the old one ends (4401)."""
        self.revocations += 1
        link = self._links.get(banner_id)
        if link is not None:
            link.revoked = True
            link.subscriber.close()

    def detach(self, link: DeviceLink) -> bool:
        """Forget the link; True if it was still the banner's current link (then the banner goes offline)."""
        link.subscriber.close()
        if self._links.get(link.banner_id) is link:
            del self._links[link.banner_id]
            return True
        return False

    def __len__(self) -> int:
        return len(self._links)

    def _on_event(self, event: Published) -> None:
        link = self._links.get(event.banner_id)
        if link is None:
            return
        banner = event.change.banner
        if banner is None:
            link.deleted = True
            link.subscriber.close()
        else:
            link.show(banner)
