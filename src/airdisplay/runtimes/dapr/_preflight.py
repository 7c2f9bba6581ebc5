"""What `airdisplay serve --runtime dapr` checks before it starts: daprd answers, and Redis lets it in.

Without it a missing sidecar showed as a minute of health-check lines from the SDK and a traceback; now
it is one line naming the address to fix, within SIDECAR_WAIT_SECONDS.
"""

from __future__ import annotations

import time

import httpx
import redis

from ..base import RuntimeUnavailable

#: daprd answers its outbound health check within a second of starting (measured with the binaries
#: that `make dapr` builds); the wait covers a sidecar started at the same time as the app.
SIDECAR_WAIT_SECONDS = 5.0


def check_dapr_reachable(
    dapr_url: str, redis_url: str, api_token: str | None = None, wait: float = SIDECAR_WAIT_SECONDS
) -> None:
    """Return once daprd and the directory's Redis answer; raise RuntimeUnavailable with the fix if not."""
    headers = {"dapr-api-token": api_token} if api_token else {}
    deadline = time.monotonic() + wait
    problem = ""
    while True:
        try:
            response = httpx.get(f"{dapr_url}/v1.0/healthz/outbound", headers=headers, timeout=1.0)
            if response.status_code < 300:
                break
            problem = f"answered {response.status_code}"
        except httpx.HTTPError as exc:
            problem = f"does not answer ({type(exc).__name__})"
        if time.monotonic() >= deadline:
            raise RuntimeUnavailable(
                f"daprd at {dapr_url} {problem} after {wait:g} s: start daprd with --dapr-http-port matching "
                "DAPR_HTTP_PORT (or run 'airdisplay dapr local'; see deploy/dapr/README.md)"
            )
        time.sleep(0.1)
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


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
