"""Shared dependencies of the routes, as Annotated aliases: routes get what app.py put in `app.state` through
these, never from `app.state` themselves (tests/api/test_routes_use_deps.py holds them to it).

They are `async def` on purpose: FastAPI runs a plain `def` dependency in a thread pool, which cost
170-270 us per request here (bench/submit_vs_bare.py, profile) for work that takes a microsecond. They take
an `HTTPConnection`, so WebSocket routes use the same aliases as HTTP ones.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.requests import HTTPConnection

from ..access import Role
from ..config import Settings
from ..realtime import DeviceLinks, StreamHub
from ..runtimes import BannerRuntime
from ._access import AccessControl
from .problems import ProblemError


async def get_runtime(connection: HTTPConnection) -> BannerRuntime:
    runtime: BannerRuntime = connection.app.state.runtime
    return runtime


async def get_settings(connection: HTTPConnection) -> Settings:
    settings: Settings = connection.app.state.settings
    return settings


AppSettings = Annotated[Settings, Depends(get_settings)]


Runtime = Annotated[BannerRuntime, Depends(get_runtime)]


async def get_devices(connection: HTTPConnection) -> DeviceLinks:
    devices: DeviceLinks = connection.app.state.devices
    return devices


Devices = Annotated[DeviceLinks, Depends(get_devices)]


async def get_hub(connection: HTTPConnection) -> StreamHub:
    hub: StreamHub = connection.app.state.hub
    return hub


#: The fan-out hub of the app's streams (WebSocket, SSE, the legacy `/ws`).
Hub = Annotated[StreamHub, Depends(get_hub)]


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


async def get_access(connection: HTTPConnection) -> AccessControl:
    return access_of(connection)


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
