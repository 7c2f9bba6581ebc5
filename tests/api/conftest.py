"""A real uvicorn server on a free loopback port, in the test's event loop, with a real HTTP client."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from dapr.actor.runtime.runtime import ActorRuntime
from fastapi import FastAPI
from pydantic import SecretStr

from airdisplay.api import create_app
from airdisplay.cli import uvicorn_options
from airdisplay.config import Settings
from airdisplay.domain import BannerChanged
from airdisplay.runtimes import EmbeddedRuntime
from airdisplay.runtimes.dapr import DaprRuntime
from tests.conftest import eventually
from tests.dapr.double import DaprdDouble


@dataclass
class RunningServer:
    url: str
    client: httpx.AsyncClient
    runtime: EmbeddedRuntime
    changes: list[BannerChanged]
    data_dir: Path
    app: FastAPI
    _server: uvicorn.Server
    _task: asyncio.Task[None]
    daprd: DaprdDouble | None = None

    async def stop(self) -> None:
        """Graceful shutdown, as on SIGTERM."""
        if not self._task.done():
            await self.client.aclose()
            self._server.should_exit = True
            await self._task
        if self.daprd is not None:
            await self.daprd.stop()

    async def create(self, banner_id: str, name: str = "Test banner") -> httpx.Response:
        response = await self.client.post("/api/v1/banners", json={"id": banner_id, "name": name})
        assert response.status_code == 201, response.text
        return response

    async def wait_for_change(self, banner_id: str, kind: str) -> BannerChanged:
        def seen() -> bool:
            return any(c.banner_id == banner_id and c.kind == kind for c in self.changes)

        await eventually(seen, what=f"{kind} on {banner_id}")
        return next(c for c in self.changes if c.banner_id == banner_id and c.kind == kind)


ServerFactory = Callable[..., Awaitable[RunningServer]]


async def _dapr_runtime(config: Settings, request: pytest.FixtureRequest) -> tuple[DaprdDouble, DaprRuntime]:
    """The Dapr runtime against the daprd double (see tests/dapr/double.py) and a real Redis."""
    redis_url = request.getfixturevalue("redis_url")
    ActorRuntime._actor_managers = {}  # the SDK keeps registrations in class globals
    daprd = DaprdDouble()
    await daprd.start()
    app_token = config.app_api_token.get_secret_value() if config.app_api_token else None
    runtime = DaprRuntime(
        config.rules,
        dapr_url=daprd.url,
        redis_url=redis_url,
        actor_client=daprd.actor_client,
        app_api_token=app_token,
    )
    return daprd, runtime


@pytest.fixture
async def start_server(tmp_path, request) -> AsyncIterator[ServerFactory]:
    """Start servers on a data dir (default: this test's tmp_path); all are stopped at the end."""
    running: list[RunningServer] = []

    async def start(
        data_dir: Path | None = None,
        api_key: str | None = None,
        runtime: str = "embedded",
        port: int = 0,
        client_sends_key: bool = False,
        **settings: object,
    ) -> RunningServer:
        """`port` 0 picks a free one; a given port lets a restarted server keep its URL.

        `api_key` is an operator key given at start-up. The submit rate limit is off unless a test sets
        `submit_rate`: most tests send many submits from one address on purpose.
        """
        settings.setdefault("submit_rate", 0)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        port = sock.getsockname()[1]
        config = Settings(
            data_dir=data_dir or tmp_path,
            port=port,
            operator_key=SecretStr(api_key) if api_key else None,
            runtime=runtime,
            **settings,
        )
        daprd = None
        if runtime == "dapr":
            daprd, dapr_runtime = await _dapr_runtime(config, request)
            app = create_app(config, dapr_runtime)
        else:
            app = create_app(config)
        runtime = app.state.runtime
        changes: list[BannerChanged] = []
        runtime.add_listener(changes.append)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **uvicorn_options()))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        await eventually(lambda: server.started or task.done(), what="server start")
        if task.done():
            task.result()
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key and client_sends_key else None
        client = httpx.AsyncClient(
            base_url=url, timeout=30, headers=headers, limits=httpx.Limits(max_connections=500)
        )
        handle = RunningServer(url, client, runtime, changes, config.data_dir, app, server, task, daprd)
        if daprd is not None and config.app_api_token is None:
            await daprd.connect_app(url)
        running.append(handle)
        return handle

    yield start
    for handle in running:
        await handle.stop()


@pytest.fixture
async def server(start_server) -> RunningServer:
    return await start_server(message_seconds=60)
