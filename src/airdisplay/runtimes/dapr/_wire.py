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
    DeviceTokenInvalid,
    DomainError,
    IdempotencyKeyReused,
    InvalidBannerId,
    InvalidBannerName,
    InvalidMessageText,
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
        case "UnknownDisplayVersion":
            exc = UnknownDisplayVersion(banner_id, 0, 0)
            exc.args = (detail,)
            return exc
    return ActorCallFailed(f"banner actor error {kind}: {detail}")


def banner_value(banner: Banner) -> dict[str, Any]:
    return banner.model_dump(mode="json")
