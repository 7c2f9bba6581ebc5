"""Setting a fleet up: check that the server answers, then register or re-key every banner.

Failure rules: the first set-up call that fails stops the set-up. The calls still running are cancelled
and awaited, every failure is retrieved (none is left for asyncio to report at exit), and the first one is
raised as one of `exceptions.py`'s errors, whose message says what to do.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

import httpx

from .exceptions import KeyRequired, ServerUnreachable, SetupFailed, UnknownBanners

#: Parallel REST calls while creating banners or rotating their tokens.
SETUP_CONCURRENCY = 32
#: A server answers its liveness probe in milliseconds; this only bounds an address that drops packets.
PROBE_TIMEOUT = 10.0
#: What every message about a missing or refused operator key ends with.
GET_A_KEY = (
    "give the simulator an operator key with --api-key or AIRDISPLAY_OPERATOR_KEY "
    "(make one where the server runs with 'airdisplay keys create --role operator')"
)


def no_answer(exc: httpx.TransportError) -> str:
    """Why a request got no answer, in a few words."""
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "unknown host"
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__


def problem_detail(response: httpx.Response) -> str:
    """The `detail` of a problem+json answer, else the start of its body."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else response.text[:200]


async def check_server(http: httpx.AsyncClient) -> None:
    """Raise ServerUnreachable unless an AirDisplay server answers its liveness probe."""
    url = str(http.base_url).rstrip("/")
    try:
        response = await http.get("/healthz", timeout=PROBE_TIMEOUT)
    except httpx.TransportError as exc:
        raise ServerUnreachable(
            f"cannot reach an AirDisplay server at {url}: {no_answer(exc)}; start one with "
            "'airdisplay serve' (or 'make run') or pass its address with --url"
        ) from exc
    if response.status_code != 200:
        raise ServerUnreachable(
            f"{url} does not answer like an AirDisplay server (GET /healthz: {response.status_code}); "
            "pass the server's address with --url"
        )


async def issue_tokens(
    http: httpx.AsyncClient,
    ids: Sequence[str],
    *,
    create: bool,
    has_key: bool,
    say: Callable[[str], None],
) -> dict[str, str]:
    """Each banner's new device token: registered first with `create`, re-keyed when it exists."""
    tokens: dict[str, str] = {}
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def one(banner_id: str) -> None:
        async with gate:
            tokens[banner_id] = await _device_token(http, banner_id, create=create, has_key=has_key)

    started = time.monotonic()
    pending = {asyncio.create_task(one(banner_id)) for banner_id in ids}
    try:
        while pending:
            done, pending = await asyncio.wait(pending, timeout=1.0, return_when=asyncio.FIRST_EXCEPTION)
            failures = [exc for task in done if (exc := task.exception()) is not None]
            if failures:
                raise failures[0]
            say(f"setting up banners: {len(tokens)}/{len(ids)}")
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    say(f"set up {len(ids)} banners in {time.monotonic() - started:.1f} s")
    return tokens


async def _device_token(http: httpx.AsyncClient, banner_id: str, *, create: bool, has_key: bool) -> str:
    try:
        if create:
            created = await http.post("/api/v1/banners", json={"id": banner_id, "name": banner_id})
            if created.status_code == 201:
                return str(created.json()["device_token"])
            if created.status_code != 409:  # 409: registered already, so it is re-keyed below
                _refused(created, banner_id, "registering banners", has_key)
        rotated = await http.post(f"/api/v1/banners/{banner_id}/device-token")
        if rotated.status_code == 404 and not create:
            raise UnknownBanners(
                f"banner {banner_id} is not registered; pass --create to register the simulated banners"
            )
        if rotated.status_code != 201:
            _refused(rotated, banner_id, "re-keying banners", has_key)
        return str(rotated.json()["device_token"])
    except httpx.TransportError as exc:
        raise ServerUnreachable(f"lost the server while setting up {banner_id}: {no_answer(exc)}") from exc


def _refused(response: httpx.Response, banner_id: str, doing: str, has_key: bool) -> NoReturn:
    status, detail = response.status_code, problem_detail(response)
    if status == 401 and not has_key:
        raise KeyRequired(f"{doing} needs an operator key on this server: {GET_A_KEY}")
    if status in (401, 403):
        raise KeyRequired(f"the server refused the key for {doing} ({status}: {detail}); {GET_A_KEY}")
    raise SetupFailed(f"{doing}: the server answered {status} for {banner_id}: {detail}")
