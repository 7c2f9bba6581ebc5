"""Shared dependencies of the routes, as Annotated aliases.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in a thread pool, which cost
170-270 us per request here (bench/submit_vs_bare.py, profile) for work that takes a microsecond.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.requests import HTTPConnection

from ..access import Role
from ..config import Settings
from ..realtime import DeviceLinks
from ..runtimes import BannerRuntime
from ._access import AccessControl
from .problems import ProblemError


async def get_runtime(request: Request) -> BannerRuntime:
    runtime: BannerRuntime = request.app.state.runtime
    return runtime


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


AppSettings = Annotated[Settings, Depends(get_settings)]


Runtime = Annotated[BannerRuntime, Depends(get_runtime)]


async def get_devices(request: Request) -> DeviceLinks:
    devices: DeviceLinks = request.app.state.devices
    return devices


Devices = Annotated[DeviceLinks, Depends(get_devices)]


def access_of(connection: HTTPConnection) -> AccessControl:
    access: AccessControl = connection.app.state.access
    return access


async def check_key(
    connection: HTTPConnection,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """A key sent where none is needed must still be valid (401): a client learns that its key is dead.

    WebSocket streams check at the handshake instead (AccessControl.accept_stream), where a refusal can
    still be an HTTP answer."""
    if connection.scope["type"] == "http":
        access_of(connection).principal(authorization)


async def require_operator(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """Operator routes need an operator key (api/_access.py has the rules)."""
    access_of(request).require(Role.OPERATOR, authorization)


async def admit_submit(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """Submits pass the submit policy (open or key) and the client's rate limit."""
    access_of(request).admit_submit(request, authorization)


async def get_access(request: Request) -> AccessControl:
    return access_of(request)


Access = Annotated[AccessControl, Depends(get_access)]
Operator = Depends(require_operator)
Submitter = Depends(admit_submit)
#: For routers of open routes: a presented key is checked even where none is needed.
KeyChecked = Depends(check_key)


def is_json_media(content_type: str | None) -> bool:
    """True for `application/json` and `application/*+json`, with or without parameters."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def require_json(content_type: Annotated[str | None, Header(include_in_schema=False)] = None) -> None:
    """Bodies are JSON; anything else is refused with 415 instead of a confusing validation error."""
    if not is_json_media(content_type):
        raise ProblemError(
            415,
            "Unsupported Media Type",
            "send the body as JSON with 'Content-Type: application/json'",
            "unsupported-media-type",
        )


JsonBody = Depends(require_json)
