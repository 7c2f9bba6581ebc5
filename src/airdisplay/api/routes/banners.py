"""Banner routes: register, list, read, delete, and the message on a banner."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status

from ...domain import BANNER_ID_PATTERN
from .._openapi import JSON_BODY_PROBLEMS, KEY_PROBLEMS, OPERATOR_PROBLEMS, SUBMIT_PROBLEMS
from .._submit import banner_response, submit_body, submit_flow, submitted_response
from ..deps import Access, AppSettings, Devices, JsonBody, KeyChecked, Operator, Runtime, Submitter
from ..schemas import BannerCreate, BannerCreated, BannerPublic, BannersPage, DeviceToken, MessageSubmit

router = APIRouter(
    prefix="/api/v1/banners", tags=["banners"], dependencies=[KeyChecked], responses=KEY_PROBLEMS
)

BannerId = Annotated[
    str, Path(pattern=BANNER_ID_PATTERN, description="The banner's slug id", examples=["n123ab"])
]
#: A small page keeps the fleet view snappy; 500 bounds one response to ~200 KB.
DEFAULT_PAGE, MAX_PAGE = 50, 500

_BUSY: dict[int | str, dict[str, Any]] = {
    409: {"description": "A message is showing (or the id exists); `Retry-After` says when it frees up"}
}


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
    return Response(
        registration.json,  # the banner's stored JSON with the token added, not serialised again
        status_code=201,
        media_type="application/json",
        headers={"ETag": f'"{banner.version}"', "Location": f"/api/v1/banners/{banner.id}"},
    )


@router.post(
    "/{banner_id}/device-token",
    status_code=201,
    response_model=DeviceToken,
    responses=OPERATOR_PROBLEMS,
    dependencies=[Operator],
)
async def rotate_device_token(banner_id: BannerId, runtime: Runtime, devices: Devices) -> DeviceToken:
    """Issue a new device token for the banner; the old one stops working at once."""
    token = await runtime.rotate_device_token(banner_id)
    devices.revoke(banner_id)  # a link opened with the old token ends now (4401)
    return DeviceToken(device_token=token)


@router.get("", response_model=BannersPage)
async def list_banners(
    runtime: Runtime,
    settings: AppSettings,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    after: Annotated[str | None, Query(max_length=64, description="Last id of the previous page")] = None,
    q: Annotated[
        str | None, Query(max_length=100, description="Only ids or names starting with this (any case)")
    ] = None,
) -> Response:
    """List banners by id, a page at a time, optionally filtered by an id or name prefix."""
    items = await runtime.list_banners(after=after, limit=limit, search=q.strip() if q else None)
    page = BannersPage(
        items=items,
        next_after=items[-1].id if len(items) == limit else None,
        max_text_length=settings.max_text_length,
    )
    return Response(page.model_dump_json(), media_type="application/json")


@router.get("/{banner_id}", response_model=BannerPublic)
async def get_banner(banner_id: BannerId, runtime: Runtime) -> Response:
    """Read one banner."""
    return banner_response(await runtime.get_banner(banner_id))


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
    # The body is read by a dependency after the credential checks, with the fast path's reader
    # (api/_submit.py); FastAPI would parse it before them, with another parser. So it is documented here.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": MessageSubmit.model_json_schema()}},
        }
    },
)
async def submit_message(
    banner_id: BannerId,
    body: Annotated[MessageSubmit, Depends(submit_body)],
    request: Request,
    runtime: Runtime,
    access: Access,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            description="1-255 visible ASCII characters (400 otherwise). A retry with the same key and text "
            "gets the first answer again (`Idempotent-Replayed: true`; a banner remembers its last 16 keys "
            "for 24 hours); the same key with other text is refused with 422."
        ),
    ] = None,
    if_match: Annotated[
        str | None,
        Header(
            description='A version from the banner\'s ETag, such as `"7"` (or `*`): 412 if the banner is at '
            "another version. A value that names no version, an empty one included, is refused with 400."
        ),
    ] = None,
) -> Response:
    """Show a message on the banner unless one is showing."""
    # Well-formed requests are served by api/_submit.py's fast path with this same flow.
    outcome = await submit_flow(
        access,
        runtime,
        banner_id,
        body.text,
        idempotency_key=idempotency_key,
        if_match=if_match,
        by=access.who(request, authorization),
    )
    return submitted_response(outcome)


@router.delete(
    "/{banner_id}/message", response_model=BannerPublic, responses=OPERATOR_PROBLEMS, dependencies=[Operator]
)
async def clear_message(banner_id: BannerId, runtime: Runtime) -> Response:
    """Take the message off the banner before it expires."""
    return banner_response(await runtime.clear_message(banner_id))
