"""Errors as RFC 9457 problem details: the one place where exceptions become HTTP status codes."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..domain import (
    BannerAlreadyExists,
    BannerBusy,
    BannerNotFound,
    BannerOffline,
    BookingNotFound,
    BookingOff,
    CancelTokenInvalid,
    IdempotencyKeyReused,
    InvalidBannerId,
    InvalidBannerName,
    InvalidMessageText,
    QueueFull,
    TextNotAllowed,
    VersionMismatch,
    format_time,
)
from ..runtimes import RuntimeNotRunning, RuntimeUnavailable, StorageUnavailable

log = logging.getLogger("airdisplay.api")

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://airdisplay.dev/problems/"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    kind: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response; `kind` names the problem type (defaults to about:blank)."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + kind if kind else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


class ProblemError(Exception):
    """Raised at the edge for a request problem that has no domain exception (bad header, wrong type)."""

    def __init__(
        self, status: int, title: str, detail: str, kind: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.kind = status, title, detail, kind
        self.headers = headers

    def response(self) -> JSONResponse:
        return problem(self.status, self.title, self.detail, kind=self.kind, headers=self.headers)


def _conflict_until(exc: Exception, title: str, kind: str, until: datetime, **extra: Any) -> JSONResponse:
    """A 409 that clears at `until`: `Retry-After` says in how many seconds."""
    seconds = max(1, math.ceil((until - datetime.now(UTC)).total_seconds()))
    return problem(
        409,
        title,
        f"{exc}; try again in {seconds} s",
        kind=kind,
        headers={"Retry-After": str(seconds)},
        **extra,
    )


def _busy(exc: BannerBusy) -> JSONResponse:
    return _conflict_until(
        exc,
        "Banner is showing a message",
        "banner-busy",
        exc.free_at,
        banner_id=exc.banner_id,
        free_at=format_time(exc.free_at),
    )


def _queue_full(exc: QueueFull) -> JSONResponse:
    return _conflict_until(
        exc,
        "Banner's queue is full",
        "queue-full",
        exc.frees_at,
        banner_id=exc.banner_id,
        queue_length=exc.length,
        frees_at=format_time(exc.frees_at),
    )


def _validation(exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    if any(err["type"] == "json_invalid" for err in errors):
        return problem(400, "Malformed JSON", "the request body is not valid JSON", kind="malformed-json")
    summary = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
    return problem(422, "Invalid request", summary, kind="invalid-request", errors=errors)


def install_problem_handlers(app: FastAPI) -> None:
    """Map every error a request can meet to a problem response; nothing leaks a stack trace."""

    def on(exc_type: type[Exception], make: Any) -> None:
        async def handler(request: Request, exc: Exception) -> JSONResponse:
            response: JSONResponse = make(exc)
            return response

        app.add_exception_handler(exc_type, handler)

    async def http_handler(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            return _method_not_allowed(request)
        return _http(exc)

    on(RequestValidationError, _validation)
    on(ProblemError, ProblemError.response)
    on(BannerNotFound, lambda e: problem(404, "Banner not found", str(e), kind="banner-not-found"))
    on(BannerAlreadyExists, lambda e: problem(409, "Banner exists", str(e), kind="banner-exists"))
    on(BannerBusy, _busy)
    on(QueueFull, _queue_full)
    on(
        BookingNotFound,
        lambda e: problem(
            404, "Booking not found", str(e), kind="booking-not-found", booking_id=e.booking_id
        ),
    )
    on(CancelTokenInvalid, lambda e: problem(403, "Wrong cancel token", str(e), kind="cancel-token-invalid"))
    on(BookingOff, lambda e: problem(403, "Booking is off", str(e), kind="booking-off"))
    on(
        BannerOffline,
        lambda e: problem(503, "Banner offline", str(e), kind="banner-offline", banner_id=e.banner_id),
    )
    on(
        VersionMismatch,
        lambda e: problem(
            412, "Banner has changed", str(e), kind="version-mismatch", current_version=e.actual
        ),
    )
    for invalid in (InvalidMessageText, InvalidBannerName, InvalidBannerId):
        on(invalid, lambda e: problem(422, "Invalid request", str(e), kind="invalid-request"))
    on(
        TextNotAllowed,
        lambda e: problem(422, "Text not allowed", str(e), kind="text-not-allowed", entry=e.entry),
    )
    on(
        IdempotencyKeyReused,
        lambda e: problem(422, "Idempotency-Key reused", str(e), kind="idempotency-key-reused"),
    )
    on(
        RuntimeNotRunning,
        lambda e: problem(503, "Service unavailable", "the service is starting or stopping"),
    )
    on(StorageUnavailable, _unavailable)
    on(RuntimeUnavailable, _unavailable)
    app.add_exception_handler(StarletteHTTPException, http_handler)
    on(Exception, _internal)


def _method_not_allowed(request: Request) -> JSONResponse:
    """405 with an Allow header naming every method of the path (Starlette names only the first route's)."""
    allowed: set[str] = set()
    for route in request.app.router.routes:
        methods = getattr(route, "methods", None)
        if methods and route.matches(request.scope)[0] is not Match.NONE:
            allowed |= methods
    allow = ", ".join(sorted(allowed))
    return problem(
        405,
        "Method Not Allowed",
        f"{request.method} is not supported here; use {allow}",
        headers={"Allow": allow},
    )


def _http(exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 413:
        return problem(413, "Request body too large", str(exc.detail), kind="body-too-large")
    return problem(exc.status_code, _reason(exc.status_code), str(exc.detail), headers=exc.headers)


#: Storage faults (disk full, database locked) usually clear within seconds; clients retry after this.
STORAGE_RETRY_AFTER = 5


def _unavailable(exc: Exception) -> JSONResponse:
    log.error("storage unavailable: %s", exc)
    return problem(
        503,
        "Storage unavailable",
        "the banner store cannot take the change right now (disk full, locked or unreachable); "
        "nothing was changed",
        kind="storage-unavailable",
        headers={"Retry-After": str(STORAGE_RETRY_AFTER)},
    )


def _internal(exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "Internal error", "an unexpected error occurred; it has been logged")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
