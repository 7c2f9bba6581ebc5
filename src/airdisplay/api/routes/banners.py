"""Banner routes: register, list, read, delete, and the message on a banner."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response, status
from fastapi.responses import JSONResponse

from ...domain import BANNER_ID_PATTERN, Banner, BannerBusy
from .._openapi import JSON_BODY_PROBLEMS, OPERATOR_PROBLEMS, SUBMIT_PROBLEMS
from ..deps import Access, JsonBody, Operator, Runtime, Submitter
from ..problems import ProblemError
from ..schemas import BannerCreate, BannerCreated, BannerPublic, BannersPage, DeviceToken, MessageSubmit

router = APIRouter(prefix="/api/v1/banners", tags=["banners"])

BannerId = Annotated[
    str, Path(pattern=BANNER_ID_PATTERN, description="The banner's slug id", examples=["n123ab"])
]
#: A small page keeps the fleet view snappy; 500 bounds one response to ~200 KB.
DEFAULT_PAGE, MAX_PAGE = 50, 500
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_ETAG_VERSION = re.compile(r'^\s*(?:W/)?"?(\d{1,18})"?\s*$')

_BUSY: dict[int | str, dict[str, Any]] = {
    409: {"description": "A message is showing (or the id exists); `Retry-After` says when it frees up"}
}


def _banner_response(banner: Banner, status_code: int = 200) -> Response:
    return Response(
        banner.model_dump_json(),
        status_code=status_code,
        media_type="application/json",
        headers={"ETag": f'"{banner.version}"'},
    )


@router.post(
    "",
    status_code=201,
    response_model=BannerCreated,
    responses={**_BUSY, **OPERATOR_PROBLEMS, **JSON_BODY_PROBLEMS},
    dependencies=[Operator, JsonBody],
)
async def create_banner(body: BannerCreate, runtime: Runtime) -> Response:
    """Register a banner; the answer carries its device token, shown this once."""
    registration = await runtime.create_banner(body.id, body.name)
    banner = registration.banner
    return JSONResponse(
        {**banner.model_dump(mode="json"), "device_token": registration.device_token},
        status_code=201,
        headers={"ETag": f'"{banner.version}"', "Location": f"/api/v1/banners/{banner.id}"},
    )


@router.post(
    "/{banner_id}/device-token",
    status_code=201,
    response_model=DeviceToken,
    responses=OPERATOR_PROBLEMS,
    dependencies=[Operator],
)
async def rotate_device_token(banner_id: BannerId, runtime: Runtime) -> DeviceToken:
    """Issue a new device token for the banner; the old one stops working at once."""
    return DeviceToken(device_token=await runtime.rotate_device_token(banner_id))


@router.get("", response_model=BannersPage)
async def list_banners(
    runtime: Runtime,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    after: Annotated[str | None, Query(max_length=64, description="Last id of the previous page")] = None,
    q: Annotated[
        str | None, Query(max_length=100, description="Only ids or names starting with this (any case)")
    ] = None,
) -> Response:
    """List banners by id, a page at a time, optionally filtered by an id or name prefix."""
    items = await runtime.list_banners(after=after, limit=limit, search=q.strip() if q else None)
    page = BannersPage(items=items, next_after=items[-1].id if len(items) == limit else None)
    return Response(page.model_dump_json(), media_type="application/json")


@router.get("/{banner_id}", response_model=BannerPublic)
async def get_banner(banner_id: BannerId, runtime: Runtime) -> Response:
    """Read one banner."""
    return _banner_response(await runtime.get_banner(banner_id))


@router.delete("/{banner_id}", status_code=204, responses=OPERATOR_PROBLEMS, dependencies=[Operator])
async def delete_banner(banner_id: BannerId, runtime: Runtime) -> Response:
    """Delete a banner with its message and pending expiry."""
    await runtime.delete_banner(banner_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{banner_id}/message",
    status_code=201,
    response_model=BannerPublic,
    responses={
        **_BUSY,
        412: {"description": "If-Match names a version the banner has moved past"},
        **SUBMIT_PROBLEMS,
        **JSON_BODY_PROBLEMS,
        429: {"description": "This client submits too fast; `Retry-After` says when to try again"},
        503: {
            "description": "The banner is offline and the fleet refuses messages for it, or storage is down"
        },
    },
    dependencies=[Submitter, JsonBody],
)
async def submit_message(
    banner_id: BannerId,
    body: MessageSubmit,
    runtime: Runtime,
    access: Access,
    idempotency_key: Annotated[str | None, Header()] = None,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Show a message on the banner unless one is showing."""
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.match(idempotency_key):
        raise ProblemError(
            400, "Bad Idempotency-Key", "Idempotency-Key must be 1-255 visible ASCII characters", "bad-header"
        )
    access.check_text(body.text)
    try:
        outcome = await runtime.submit_message(
            banner_id,
            body.text,
            idempotency_key=idempotency_key,
            expected_version=_expected_version(if_match),
        )
    except BannerBusy:
        access.metrics.busy.inc()
        raise
    access.metrics.accepted.inc()
    response = _banner_response(outcome.banner, 201)
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@router.delete(
    "/{banner_id}/message", response_model=BannerPublic, responses=OPERATOR_PROBLEMS, dependencies=[Operator]
)
async def clear_message(banner_id: BannerId, runtime: Runtime) -> Response:
    """Take the message off the banner before it expires."""
    return _banner_response(await runtime.clear_message(banner_id))


def _expected_version(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    found = _ETAG_VERSION.match(if_match)
    if found is None:
        raise ProblemError(400, "Bad If-Match", 'If-Match must be a banner version such as "7"', "bad-header")
    return int(found.group(1))
