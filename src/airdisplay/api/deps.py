"""Shared dependencies of the routes, as Annotated aliases.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in a thread pool, which cost
170-270 us per request here (bench/submit_vs_bare.py, profile) for work that takes a microsecond.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from ..config import Settings
from ..runtimes import BannerRuntime
from .problems import ProblemError


async def get_runtime(request: Request) -> BannerRuntime:
    runtime: BannerRuntime = request.app.state.runtime
    return runtime


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


Runtime = Annotated[BannerRuntime, Depends(get_runtime)]


async def require_api_key(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """Mutating routes need `Authorization: Bearer <API key>` when the operator set a key."""
    key = settings_of(request).api_key
    if key is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    expected = key.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
        raise ProblemError(
            401,
            "Unauthorized",
            "send the operator's API key as 'Authorization: Bearer <key>'",
            "unauthorized",
            headers={"WWW-Authenticate": "Bearer"},
        )


Authorized = Depends(require_api_key)


async def require_json(content_type: Annotated[str | None, Header(include_in_schema=False)] = None) -> None:
    """Bodies are JSON; anything else is refused with 415 instead of a confusing validation error."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise ProblemError(
            415,
            "Unsupported Media Type",
            "send the body as JSON with 'Content-Type: application/json'",
            "unsupported-media-type",
        )


JsonBody = Depends(require_json)
