"""Realtime fan-out: subscribers with bounded, coalescing outboxes, fed by the event bus."""

from ._devices import DeviceLink, DeviceLinks, display_frame
from ._hub import StreamHub
from ._session import MAX_BANNERS_PER_CONNECTION, StreamSession, TooManyBanners
from ._subscriber import (
    DEFAULT_SEND_BUFFER,
    DEFAULT_STALL_SECONDS,
    Outgoing,
    Subscriber,
    SubscriberClosed,
    SubscriberOverflow,
    SubscriberState,
)
from ._traces import delivered

__all__ = [
    "DEFAULT_SEND_BUFFER",
    "DEFAULT_STALL_SECONDS",
    "DeviceLink",
    "DeviceLinks",
    "MAX_BANNERS_PER_CONNECTION",
    "Outgoing",
    "StreamHub",
    "StreamSession",
    "Subscriber",
    "SubscriberClosed",
    "SubscriberOverflow",
    "SubscriberState",
    "TooManyBanners",
    "delivered",
    "display_frame",
]
