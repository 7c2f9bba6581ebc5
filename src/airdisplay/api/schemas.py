"""Request and response bodies of the REST API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..domain import BANNER_ID_PATTERN, Banner, Message

#: The public shape of a banner and of its message is the domain's own.
BannerPublic = Banner
MessagePublic = Message


class BannerCreate(BaseModel):
    """Register a banner."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=BANNER_ID_PATTERN, max_length=64, examples=["n123ab"])
    name: str = Field(min_length=1, max_length=200, examples=["Cessna N123AB, tail banner"])


class BannerCreated(Banner):
    """A newly registered banner with its device token (shown only in this answer)."""

    device_token: str


class DeviceToken(BaseModel):
    """A device token, shown once; the service keeps only its hash."""

    device_token: str


class MessageSubmit(BaseModel):
    """Put a message on a banner."""

    model_config = ConfigDict(extra="forbid")

    # The configured limit (default 64 after trimming) is the domain's; this only bounds the payload.
    text: str = Field(max_length=1000, examples=["Marry me, Alex!"])


class BannersPage(BaseModel):
    """One page of the fleet, ordered by id; pass `next_after` as `after` for the next page."""

    items: list[BannerPublic]
    next_after: str | None


class Health(BaseModel):
    status: str
