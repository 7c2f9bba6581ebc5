"""Booking routes: take the next free slot of a busy banner instead of a 409, list and cancel bookings
(domain/bookings.py has the rules)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request, Response, status

from ...access import Role
from ...domain import BANNER_ID_PATTERN
from .._openapi import JSON_BODY_PROBLEMS, KEY_PROBLEMS, OPERATOR_PROBLEMS, SUBMIT_PROBLEMS
from .._submit import submitted_response, valid_idempotency_key
from ..deps import Access, AppSettings, JsonBody, KeyChecked, Runtime, Submitter
from ..schemas import BannerPublic, BookingCreate, BookingQueued, BookingsList, BookingSlot

router = APIRouter(
    prefix="/api/v1/banners/{banner_id}/bookings",
    tags=["bookings"],
    dependencies=[KeyChecked],
    responses=KEY_PROBLEMS,
)

BannerId = Annotated[
    str, Path(pattern=BANNER_ID_PATTERN, description="The banner's slug id", examples=["n123ab"])
]
#: Booking ids are message ids: 32 hex digits.
BookingId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="The booking's id")]


@router.post(
    "",
    status_code=202,
    response_model=BookingQueued,
    responses={
        201: {"model": BannerPublic, "description": "The banner was free: the message shows now"},
        403: {"description": "Booking is off on this server (`--queue-length 0`), or the key may not book"},
        429: {"description": "This client books too fast, or holds its most waiting bookings"},
        409: {"description": "The banner's queue is full; `Retry-After` says when a place frees"},
        **SUBMIT_PROBLEMS,
        **JSON_BODY_PROBLEMS,
        503: {
            "description": "The banner is offline and the fleet refuses messages for it, or storage is down"
        },
    },
    dependencies=[Submitter, JsonBody],
)
async def book(
    banner_id: BannerId,
    body: BookingCreate,
    request: Request,
    runtime: Runtime,
    access: Access,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            description="As on `POST .../message`: a retry with the same key and text gets the first answer "
            "again (`Idempotent-Replayed: true`), without the cancel token, which is shown once."
        ),
    ] = None,
) -> Response:
    """Show the message now if the banner is free, else book the next free slot: it then shows, for the
    message time, as soon as the bookings ahead of it have had theirs."""
    valid_idempotency_key(idempotency_key)
    access.check_text(body.text)
    who = access.who(request, authorization)
    hold = await access.reserve_booking(who, authorization)
    try:
        outcome = await runtime.book(banner_id, body.text, by=who, idempotency_key=idempotency_key)
    except BaseException:
        if hold is not None:
            await access.bookings.release(who, hold)
        raise
    if hold is not None:
        if outcome.shown is None and not outcome.replayed:
            assert outcome.starts_at is not None
            starts_at = outcome.starts_at.timestamp()
            await access.bookings.waiting(who, hold, banner_id, outcome.booking_id, starts_at)
        else:
            await access.bookings.release(who, hold)
    if outcome.shown is not None:
        access.metrics.accepted.inc()
        return submitted_response(outcome.shown)
    assert outcome.starts_at is not None
    queued = BookingQueued(
        banner_id=banner_id,
        booking_id=outcome.booking_id,
        position=outcome.position,
        starts_at=outcome.starts_at,
        cancel_token=outcome.cancel_token,
    )
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    return Response(queued.model_dump_json(), 202, headers, media_type="application/json")


@router.get("", response_model=BookingsList)
async def list_bookings(
    banner_id: BannerId,
    runtime: Runtime,
    access: Access,
    settings: AppSettings,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """The banner's waiting bookings in the order they start, with their texts for an operator."""
    texts: dict[str, str] = {}
    if access.is_operator(authorization):
        texts = {booking.id: booking.text for booking in (await runtime.bookings(banner_id)).entries}
    banner = await runtime.get_banner(banner_id)
    items = [
        BookingSlot(booking_id=slot.id, position=i, starts_at=slot.starts_at, text=texts.get(slot.id))
        for i, slot in enumerate(banner.queue, 1)
    ]
    page = BookingsList(banner_id=banner_id, items=items, queue_length=settings.queue_length)
    return Response(page.model_dump_json(), media_type="application/json")


_CANCEL_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **OPERATOR_PROBLEMS,
    403: {"description": "The cancel token is not this booking's, or the key may not cancel"},
    404: {"description": "No such banner, or the booking is not waiting (shown, cancelled or unknown)"},
}


@router.delete(
    "/{booking_id}",
    status_code=204,
    responses=_CANCEL_PROBLEMS,
    # The booker's Cancel-Token header, or an operator key: no key is needed with the token.
    openapi_extra={"security": [{}, {"bearer": []}]},
)
async def cancel_booking(
    banner_id: BannerId,
    booking_id: BookingId,
    runtime: Runtime,
    access: Access,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    cancel_token: Annotated[
        str | None,
        Header(
            max_length=200,
            description="The token the booking's answer gave; without it, an operator key is needed",
        ),
    ] = None,
) -> Response:
    """Cancel a waiting booking; the bookings behind it move up."""
    if cancel_token is None:
        access.require(Role.OPERATOR, authorization)
    await runtime.cancel_booking(banner_id, booking_id, cancel_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
