"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import Runtime
from ..problems import ProblemError
from ..schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"description": "Not ready"}})
async def readyz(runtime: Runtime) -> Health:
    """The service accepts banner calls, writes included."""
    reason = runtime.unready_reason()
    if reason is not None:
        raise ProblemError(503, "Not ready", reason, "not-ready")
    return Health(status="ready")
