"""What crosses the Dapr actor boundary: results and domain errors as plain JSON envelopes.

An exception raised in a Dapr actor method reaches the caller only as a 500 with the exception's repr
inside daprd's error text, so domain outcomes (busy, not found, ...) travel as normal results instead:
`{"ok": true, "value": ...}` or `{"ok": false, "error": {"kind": ..., ...}}`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...domain import (
    Banner,
    BannerAlreadyExists,
    BannerBusy,
    BannerNotFound,
    BannerOffline,
    BookingNotFound,
    BookingOff,
    BookOutcome,
    CancelTokenInvalid,
    DeviceTokenInvalid,
    DomainError,
    IdempotencyKeyReused,
    InvalidBannerId,
    InvalidBannerName,
    InvalidMessageText,
    QueueFull,
    SubmitOutcome,
    UnknownDisplayVersion,
    VersionMismatch,
    format_time,
)
from ..base import RuntimeUnavailable


class ActorCallFailed(RuntimeUnavailable):
    """Raised when a Dapr actor call fails for a reason that is not a banner rule (daprd, network, bug)."""


def ok(value: object) -> dict[str, Any]:
    return {"ok": True, "value": value}


def error(exc: DomainError) -> dict[str, Any]:
    """The envelope for a domain error, with what is needed to raise it again on the caller's side."""
    body: dict[str, Any] = {"kind": type(exc).__name__, "detail": str(exc)}
    if isinstance(exc, BannerBusy):
        body |= {"banner_id": exc.banner_id, "free_at": format_time(exc.free_at)}
    elif isinstance(exc, VersionMismatch):
        body |= {"banner_id": exc.banner_id, "expected": exc.expected, "actual": exc.actual}
    elif isinstance(exc, IdempotencyKeyReused):
        body |= {"key": exc.key}
    elif isinstance(exc, QueueFull):
        body |= {"banner_id": exc.banner_id, "length": exc.length, "frees_at": format_time(exc.frees_at)}
    elif isinstance(exc, BookingNotFound | CancelTokenInvalid):
        body |= {"banner_id": exc.banner_id, "booking_id": exc.booking_id}
    elif isinstance(exc, UnknownDisplayVersion) or hasattr(exc, "banner_id"):
        body |= {"banner_id": exc.banner_id}
    return {"ok": False, "error": body}


def unwrap(envelope: object) -> Any:
    """The value of an envelope, or the domain error it carries raised again."""
    if not isinstance(envelope, dict) or "ok" not in envelope:
        raise ActorCallFailed(f"unexpected reply from the banner actor: {envelope!r:.200}")
    if envelope["ok"]:
        return envelope.get("value")
    raise _rebuild(envelope.get("error") or {})


def _rebuild(err: dict[str, Any]) -> Exception:
    kind, detail = err.get("kind"), str(err.get("detail", ""))
    banner_id = str(err.get("banner_id", ""))
    match kind:
        case "BannerNotFound":
            return BannerNotFound(banner_id)
        case "BannerAlreadyExists":
            return BannerAlreadyExists(banner_id)
        case "BannerBusy":
            return BannerBusy(banner_id, datetime.fromisoformat(err["free_at"]))
        case "BannerOffline":
            return BannerOffline(banner_id)
        case "VersionMismatch":
            return VersionMismatch(banner_id, int(err["expected"]), int(err["actual"]))
        case "IdempotencyKeyReused":
            return IdempotencyKeyReused(str(err.get("key", "")))
        case "DeviceTokenInvalid":
            return DeviceTokenInvalid(banner_id)
        case "InvalidMessageText":
            return InvalidMessageText(detail)
        case "InvalidBannerName":
            return InvalidBannerName(detail)
        case "InvalidBannerId":
            return InvalidBannerId(detail)
        case "QueueFull":
            return QueueFull(banner_id, int(err["length"]), datetime.fromisoformat(err["frees_at"]))
        case "BookingNotFound":
            return BookingNotFound(banner_id, str(err.get("booking_id", "")))
        case "CancelTokenInvalid":
            return CancelTokenInvalid(banner_id, str(err.get("booking_id", "")))
        case "BookingOff":
            return BookingOff()
        case "UnknownDisplayVersion":
            exc = UnknownDisplayVersion(banner_id, 0, 0)
            exc.args = (detail,)
            return exc
    return ActorCallFailed(f"banner actor error {kind}: {detail}")


def banner_value(banner: Banner) -> dict[str, Any]:
    return banner.model_dump(mode="json")


def book_value(outcome: BookOutcome) -> dict[str, Any]:
    shown = outcome.shown
    return {
        "shown": None
        if shown is None
        else {"banner": banner_value(shown.banner), "replayed": shown.replayed},
        "booking_id": outcome.booking_id,
        "position": outcome.position,
        "starts_at": None if outcome.starts_at is None else format_time(outcome.starts_at),
        "cancel_token": outcome.cancel_token,
        "replayed": outcome.replayed,
    }


def book_outcome(value: dict[str, Any]) -> BookOutcome:
    shown = value.get("shown")
    starts_at = value.get("starts_at")
    return BookOutcome(
        shown=None
        if shown is None
        else SubmitOutcome(Banner.model_validate(shown["banner"]), bool(shown["replayed"])),
        booking_id=str(value.get("booking_id", "")),
        position=int(value.get("position", 0)),
        starts_at=None if starts_at is None else datetime.fromisoformat(starts_at),
        cancel_token=value.get("cancel_token"),
        replayed=bool(value.get("replayed")),
    )
