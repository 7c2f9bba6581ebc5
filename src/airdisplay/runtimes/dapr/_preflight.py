"""What `airdisplay serve --runtime dapr` checks before it starts: daprd answers, and Redis lets it in.

Without it a missing sidecar showed as a minute of health-check lines from the SDK and a traceback; now
it is one line naming the address to fix, within SIDECAR_WAIT_SECONDS.
"""

from __future__ import annotations

import asyncio

import redis

from ..base import RuntimeUnavailable
from ._sidecar import Sidecar, SidecarUnreachable

#: daprd answers its outbound health check within a second of starting (measured with the binaries
#: that `make dapr` builds); the wait covers a sidecar started at the same time as the app.
SIDECAR_WAIT_SECONDS = 5.0


def check_dapr_reachable(
    dapr_url: str, redis_url: str, api_token: str | None = None, wait: float = SIDECAR_WAIT_SECONDS
) -> None:
    """Return once daprd and the directory's Redis answer; raise RuntimeUnavailable with the fix if not."""
    try:
        asyncio.run(_wait_for_sidecar(dapr_url, api_token, wait))
    except SidecarUnreachable as exc:
        raise RuntimeUnavailable(
            f"daprd at {dapr_url} {exc} after {wait:g} s: start daprd with --dapr-http-port matching "
            "DAPR_HTTP_PORT (or run 'airdisplay dapr local'; see deploy/dapr/README.md)"
        ) from None
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise RuntimeUnavailable(
            f"Redis at AIRDISPLAY_REDIS_URL ({_without_password(redis_url)}) refused the fleet directory: "
            f"{exc}; give it the URL (and password) the Dapr components use"
        ) from None
    finally:
        client.close()


async def _wait_for_sidecar(dapr_url: str, api_token: str | None, wait: float) -> None:
    sidecar = Sidecar(dapr_url, api_token)
    try:
        await sidecar.wait_until_up(wait)
    finally:
        await sidecar.close()


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
