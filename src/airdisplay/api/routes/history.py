"""History routes: what a banner showed, and what the fleet showed in a time range (domain/history.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response

from ...domain import BANNER_ID_PATTERN, HistoryPage
from .._openapi import KEY_PROBLEMS, OPERATOR_PROBLEMS, problem_responses
from ..deps import Access, KeyChecked, Operator, Runtime
from ..problems import ProblemError
from ..schemas import BannerHistory, FleetHistory

router = APIRouter(tags=["history"], dependencies=[KeyChecked], responses=KEY_PROBLEMS)

BannerId = Annotated[
    str, Path(pattern=BANNER_ID_PATTERN, description="The banner's slug id", examples=["n123ab"])
]
#: Ten entries fill the page's card; 200 bound one answer to ~60 KB.
DEFAULT_BANNER_PAGE, MAX_BANNER_PAGE = 10, 200
#: An export pages through a day of a large fleet in a few hundred requests.
DEFAULT_FLEET_PAGE, MAX_FLEET_PAGE = 100, 1000
Cursor = Annotated[str | None, Query(max_length=300, description="`next` of the previous page")]


def _time_query(description: str) -> Any:
    return Query(max_length=64, description=description, json_schema_extra={"format": "date-time"})


def _bad_cursor() -> ProblemError:
    return ProblemError(400, "Bad cursor", "the cursor is not one a history page gave", "bad-cursor")


@router.get(
    "/api/v1/banners/{banner_id}/history", response_model=BannerHistory, responses=problem_responses(400)
)
async def banner_history(
    banner_id: BannerId,
    runtime: Runtime,
    access: Access,
    before: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=MAX_BANNER_PAGE)] = DEFAULT_BANNER_PAGE,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """What the banner showed, newest first (the message showing now included); who sent each is for an
    operator. A deleted banner keeps its history."""
    try:
        page = await runtime.history(banner_id, before=before, limit=limit)
    except ValueError:
        raise _bad_cursor() from None
    if not access.is_operator(authorization):
        page = HistoryPage([entry.model_copy(update={"by": None}) for entry in page.items], page.next)
    body = BannerHistory(banner_id=banner_id, items=page.items, next=page.next)
    return Response(body.model_dump_json(), media_type="application/json")


@router.get(
    "/api/v1/history",
    response_model=FleetHistory,
    responses={**OPERATOR_PROBLEMS, **problem_responses(400)},
    dependencies=[Operator],
)
async def fleet_history(
    runtime: Runtime,
    since: Annotated[str | None, _time_query("From this time (default: the beginning)")] = None,
    until: Annotated[str | None, _time_query("Until this time, not included (default: now)")] = None,
    after: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=MAX_FLEET_PAGE)] = DEFAULT_FLEET_PAGE,
) -> Response:
    """What every banner showed between two times (by when it showed), oldest first, with who sent it: the
    messages that ended (an entry is written when its message ends; a banner's own history lists the one
    showing now too)."""
    start = _time(since, "since") if since is not None else datetime.fromtimestamp(0, UTC)
    end = _time(until, "until") if until is not None else datetime.now(UTC)
    if end <= start:
        raise ProblemError(400, "Bad time range", "`until` must come after `since`", "bad-time-range")
    try:
        page = await runtime.fleet_history(since=start, until=end, after=after, limit=limit)
    except ValueError:
        raise _bad_cursor() from None
    body = FleetHistory(since=start, until=end, items=page.items, next=page.next)
    return Response(body.model_dump_json(), media_type="application/json")


def _time(text: str, name: str) -> datetime:
    """An ISO 8601 date and time (a time without a zone is UTC, as every time the service sends); 422 for
    anything else, a bare date or a number of seconds included."""
    try:
        if "T" not in text.upper():
            raise ValueError(text)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ProblemError(
            422,
            "Invalid request",
            f"{name}: expected a date and time such as 2026-11-30T14:03:00Z",
            "invalid-request",
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
