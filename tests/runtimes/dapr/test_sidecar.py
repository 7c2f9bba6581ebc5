"""The client of daprd's HTTP API (runtimes/dapr/_sidecar.py) against a slow endpoint on a real port.

The endpoint is a stand-in: a real daprd cannot be made to hold one chosen call unanswered. Calls to the
real daprd are tested in tests/runtimes/dapr/test_real_cluster.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from airdisplay.runtimes.dapr import _sidecar
from airdisplay.runtimes.dapr._sidecar import Sidecar, SidecarUnreachable

#: The test's own limit on a call: one that waits for the held answer fails it.
TEST_LIMIT = 15.0


@pytest.fixture
async def slow_daprd() -> AsyncIterator[str]:
    """An HTTP server that answers no request until the test ends; its base URL."""
    released = asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        await released.wait()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", held)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        released.set()
        await runner.cleanup()


async def test_a_call_without_its_own_limit_ends_at_the_call_timeout(
    slow_daprd: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Actor state, reminder and invocation calls pass no limit: CALL_TIMEOUT bounds them (it did not:
    the request's `timeout=None` told aiohttp "no timeout", so a stalled daprd held a turn for ever)."""
    monkeypatch.setattr(_sidecar, "CALL_TIMEOUT", 0.3)
    sidecar = Sidecar(slow_daprd)
    try:
        with pytest.raises(SidecarUnreachable, match="TimeoutError"):
            await asyncio.wait_for(sidecar.request("GET", "/v1.0/state/x"), TEST_LIMIT)
    finally:
        await sidecar.close()


async def test_a_call_with_a_limit_ends_at_it(slow_daprd: str) -> None:
    sidecar = Sidecar(slow_daprd)
    try:
        with pytest.raises(SidecarUnreachable, match="TimeoutError"):
            await asyncio.wait_for(sidecar.request("GET", "/v1.0/healthz", limit=0.3), TEST_LIMIT)
    finally:
        await sidecar.close()
