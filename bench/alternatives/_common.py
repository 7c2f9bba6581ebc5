"""What both lock-based baselines share with AirDisplay's edge: the body model, the text rule, the JSON."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

#: AirDisplay's defaults: a banner shows at most 64 characters; the bench sets a short display time.
MAX_TEXT_LENGTH = 64
DISPLAY_SECONDS = float(os.environ.get("BENCH_DISPLAY_SECONDS", "60"))
PROBLEMS = "https://airdisplay.dev/problems/"


class MessageSubmit(BaseModel):
    """The same body model as AirDisplay's submit route."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=1000)


def clean_text(raw: str) -> str | None:
    """The text a banner can show (AirDisplay's rule: trimmed, 1..64, printable), or None."""
    text = raw.strip()
    return text if text and len(text) <= MAX_TEXT_LENGTH and text.isprintable() else None


def iso(at: datetime) -> str:
    """An instant as AirDisplay writes it: 2026-01-01T12:00:00.123456Z."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": PROBLEMS + kind, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def busy(banner_id: str, free_at: datetime) -> JSONResponse:
    return problem(
        409,
        "banner-busy",
        "Banner is showing a message",
        f"banner {banner_id!r} is showing a message until {free_at.isoformat()}",
        banner_id=banner_id,
        free_at=free_at.isoformat(),
    )


def not_found(banner_id: str) -> JSONResponse:
    return problem(404, "banner-not-found", "Banner not found", f"banner {banner_id!r} is not registered")


def invalid_text() -> JSONResponse:
    return problem(
        422, "invalid-request", "Invalid request", "message text is empty, too long or not printable"
    )


def banner_json(
    banner_id: str, name: str, version: int, message: dict[str, str] | None, updated_at: str, status: int
) -> JSONResponse:
    """A banner in AirDisplay's shape (less the device fields these baselines do not track)."""
    body = {"id": banner_id, "name": name, "message": message, "version": version, "updated_at": updated_at}
    return JSONResponse(body, status_code=status, headers={"ETag": f'"{version}"'})


def install_validation_handler(app: FastAPI) -> None:
    """Validation errors as problem+json, as AirDisplay answers them."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        summary = "; ".join(str(e.get("msg", "")) for e in exc.errors()[:5])
        return problem(422, "invalid-request", "Invalid request", summary)

    app.add_exception_handler(RequestValidationError, handler)
