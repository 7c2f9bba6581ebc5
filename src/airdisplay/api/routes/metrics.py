"""Service metrics for the operator, in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from .._openapi import OPERATOR_PROBLEMS
from ..deps import Access, Operator

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Operator],
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        **OPERATOR_PROBLEMS,
    },
)
async def metrics(access: Access) -> Response:
    """Counters and gauges of this server (operator key)."""
    return Response(access.metrics.render(), media_type=CONTENT_TYPE_LATEST)
