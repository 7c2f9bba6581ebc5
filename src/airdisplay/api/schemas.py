"""Request and response bodies of the REST API."""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..domain import BANNER_ID_PATTERN, MAX_NAME_LENGTH, Banner, HistoryEntry

_BANNER_ID = re.compile(BANNER_ID_PATTERN)

#: The public shape of a banner and of its message is the domain's own.
BannerPublic = Banner


class BannerCreate(BaseModel):
    """Register a banner."""

    model_config = ConfigDict(extra="forbid")

    # The pattern is checked below, to answer in words rather than with the regular expression.
    id: str = Field(max_length=64, examples=["n123ab"], json_schema_extra={"pattern": BANNER_ID_PATTERN})
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH, examples=["Cessna N123AB, tail banner"])

    @field_validator("id")
    @classmethod
    def _id_is_a_slug(cls, value: str) -> str:
        if not _BANNER_ID.match(value):
            raise ValueError(
                "an id is 1-64 lowercase letters, digits and hyphens, starting and ending with a letter or "
                "digit, e.g. n123ab"
            )
        return value


class BannerCreated(Banner):
    """A newly registered banner with its device token (shown only in this answer)."""

    device_token: str


class DeviceToken(BaseModel):
    """A device token, shown once; the service keeps only its hash."""

    device_token: str


class MessageSubmit(BaseModel):
    """Put a message on a banner."""

    model_config = ConfigDict(extra="forbid")

    # The configured limit is the domain's (BannerRules.clean_text) and applies after trimming, so a schema
    # cannot state it as maxLength; the description does, and 1,000 bounds the payload before trimming.
    text: str = Field(
        min_length=1,
        max_length=1000,
        description="The message: after NFC normalisation and trimming of surrounding whitespace, 1 to "
        "`max_text_length` characters as people see them (grapheme clusters: a flag is one), at least "
        "one visible (64 unless the operator sets `--max-text-length`; "
        "`GET /api/v1/banners` reports it), not on the fleet's blocklist; 422 otherwise. At most 1,000 "
        "characters as sent.",
        examples=["Marry me, Alex!"],
    )


class BannersPage(BaseModel):
    """One page of the fleet, ordered by id; pass `next_after` as `after` for the next page."""

    items: list[BannerPublic]
    next_after: str | None
    max_text_length: int = Field(description="The longest message text a banner here shows (characters)")


class Health(BaseModel):
    status: str


class BookingCreate(BaseModel):
    """Book the banner's next free slot (shown at once when the banner is free)."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(
        min_length=1,
        max_length=1000,
        description="The message, under the rules of a submit's text (see `POST .../message`).",
        examples=["Happy birthday, Sam!"],
    )


class BookingQueued(BaseModel):
    """A booking waiting for its slot."""

    banner_id: str
    booking_id: str = Field(description="Names the booking; its message has this id once it shows")
    position: int = Field(ge=1, description="1: next after the message showing now")
    starts_at: datetime = Field(
        description="When it starts, if no booking ahead is cancelled and the banner is not cleared early "
        "(either moves it earlier; pages and devices hear of it on the stream)"
    )
    cancel_token: str | None = Field(
        description="Shown only in this answer (null when a retry with the same Idempotency-Key replays "
        "it): send it as the `Cancel-Token` header of `DELETE .../bookings/{booking_id}`"
    )


class BookingSlot(BaseModel):
    """One waiting booking; its text only for an operator."""

    booking_id: str
    position: int
    starts_at: datetime
    text: str | None = Field(None, description="Only in an operator's listing")


class BookingsList(BaseModel):
    """A banner's waiting bookings, in the order they start."""

    banner_id: str
    items: list[BookingSlot]
    queue_length: int = Field(description="The most bookings a banner here holds (0: booking is off)")


class BannerHistory(BaseModel):
    """What a banner showed, newest first; pass `next` as `before` for the page after."""

    banner_id: str
    items: list[HistoryEntry]
    next: str | None


class FleetHistory(BaseModel):
    """What the fleet showed in [since, until), oldest first; pass `next` as `after` for the page after."""

    since: datetime
    until: datetime
    items: list[HistoryEntry]
    next: str | None
