"""Errors of the banner domain: every rule violation has its own type, the edge maps them to HTTP."""

from __future__ import annotations

from datetime import datetime

from .times import format_time


class DomainError(Exception):
    """Raised when a banner rule refuses an operation (base class)."""


class InvalidMessageText(DomainError, ValueError):
    """Raised when message text is empty, too long or holds characters a banner cannot show."""


class InvalidBannerName(DomainError, ValueError):
    """Raised when a banner name is empty, too long or not printable."""


class InvalidBannerId(DomainError, ValueError):
    """Raised when a banner id is not a URL-safe slug."""


class BannerNotFound(DomainError, LookupError):
    """Raised when no banner with the given id is registered."""

    def __init__(self, banner_id: str) -> None:
        super().__init__(f"banner {banner_id!r} is not registered")
        self.banner_id = banner_id


class BannerAlreadyExists(DomainError, ValueError):
    """Raised when registering a banner id that is already taken."""

    def __init__(self, banner_id: str) -> None:
        super().__init__(f"banner {banner_id!r} is already registered")
        self.banner_id = banner_id


class BannerBusy(DomainError):
    """Raised when a message is submitted while another one is still showing."""

    def __init__(self, banner_id: str, free_at: datetime) -> None:
        super().__init__(f"banner {banner_id!r} is showing a message until {format_time(free_at)}")
        self.banner_id = banner_id
        self.free_at = free_at


class BannerOffline(DomainError):
    """Raised when a message is submitted for an offline banner and the fleet refuses those."""

    def __init__(self, banner_id: str) -> None:
        super().__init__(f"banner {banner_id!r} is offline and this fleet does not queue messages for it")
        self.banner_id = banner_id


class UnknownDisplayVersion(DomainError, ValueError):
    """Raised when a device acknowledges a display version the banner never had."""

    def __init__(self, banner_id: str, acknowledged: int, current: int) -> None:
        super().__init__(f"banner {banner_id!r} has no display version {acknowledged} (current: {current})")
        self.banner_id = banner_id


class DeviceTokenInvalid(DomainError, PermissionError):
    """Raised when a device presents a token that does not open this banner's channel."""

    def __init__(self, banner_id: str) -> None:
        super().__init__(f"the token does not open banner {banner_id!r}")
        self.banner_id = banner_id


class VersionMismatch(DomainError):
    """Raised when a caller's expected version (If-Match) is not the banner's current version."""

    def __init__(self, banner_id: str, expected: int, actual: int) -> None:
        super().__init__(f"banner {banner_id!r} is at version {actual}, not {expected}")
        self.banner_id = banner_id
        self.expected = expected
        self.actual = actual


class IdempotencyKeyReused(DomainError, ValueError):
    """Raised when an Idempotency-Key is sent again with a different message text."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used for a different message")
        self.key = key


class TextNotAllowed(DomainError, ValueError):
    """Raised when message text matches an entry of the fleet's content blocklist."""

    def __init__(self, entry: str) -> None:
        super().__init__(f"the text contains {entry!r}, which this fleet does not allow on its banners")
        self.entry = entry


class QueueFull(DomainError):
    """Raised when a booking finds the banner's queue full."""

    def __init__(self, banner_id: str, length: int, frees_at: datetime) -> None:
        super().__init__(
            f"banner {banner_id!r} has {length} bookings waiting, its most; a place frees at "
            f"{format_time(frees_at)}"
        )
        self.banner_id = banner_id
        self.length = length
        self.frees_at = frees_at


class BookingNotFound(DomainError, LookupError):
    """Raised when a booking is not waiting on the banner (unknown, already shown or cancelled)."""

    def __init__(self, banner_id: str, booking_id: str) -> None:
        super().__init__(f"no booking {booking_id!r} is waiting on banner {banner_id!r}")
        self.banner_id = banner_id
        self.booking_id = booking_id


class CancelTokenInvalid(DomainError, PermissionError):
    """Raised when a cancel token is not the one given for the booking."""

    def __init__(self, banner_id: str, booking_id: str) -> None:
        super().__init__(f"the cancel token is not the one of booking {booking_id!r}")
        self.banner_id = banner_id
        self.booking_id = booking_id


class BookingOff(DomainError):
    """Raised when a booking reaches a server whose operator turned booking off (`--queue-length 0`)."""

    def __init__(self) -> None:
        super().__init__("booking is turned off on this server; submit when the banner is free")
