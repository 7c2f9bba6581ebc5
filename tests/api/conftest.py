"""A real uvicorn server on a free loopback port, in the test's event loop, with a real HTTP client.

Runtimes: "embedded" (SQLite in the data dir); "dapr", the Dapr SDK host behind the daprd double of
tests/dapr/double.py; "dapr-real", the same app behind a real daprd subprocess (tests/dapr/conftest.py)
joined to the session's placement + scheduler (tests/conftest.py), its components on the test's Redis.
"""

from __future__ import annotations

import asyncio
import itertools
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
from airdisplay.runtimes.dapr._local import LocalDapr
from tests.conftest import eventually
from tests.dapr.conftest import RealDaprd
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
    sidecar: RealDaprd | None = None

    async def stop(self) -> None:
        """Graceful shutdown, as on SIGTERM."""
        if self.sidecar is not None:  # before the app: daprd deactivates its actors through the app
            await self.sidecar.stop()
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

#: App ids of the real-daprd servers: one per test, so no test sees another's actor state or reminders.
_app_ids = itertools.count()


async def _dapr_runtime(config: Settings, redis_url: str) -> tuple[DaprdDouble, DaprRuntime]:
    """The Dapr runtime against the daprd double (see tests/dapr/double.py) and a real Redis."""
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


def _real_dapr_runtime(
    config: Settings, control: LocalDapr, redis_url: str, app_id: str, name: str
) -> tuple[RealDaprd, DaprRuntime]:
    """The Dapr runtime behind a real daprd for the app on `config.port`, with the SDK's own HTTP client."""
    ActorRuntime._actor_managers = {}  # the SDK keeps registrations in class globals
    app_token = config.app_api_token.get_secret_value() if config.app_api_token else None
    sidecar = RealDaprd.start(
        control, app_id, config.port, redis_url, config.data_dir / "dapr-components", name, app_token
    )
    runtime = DaprRuntime(config.rules, dapr_url=sidecar.url, redis_url=redis_url, app_api_token=app_token)
    return sidecar, runtime


@pytest.fixture
async def start_server(tmp_path, request) -> AsyncIterator[ServerFactory]:
    """Start servers on a data dir (default: this test's tmp_path); all are stopped at the end.

    The "dapr-real" servers of one test are replicas of one app id of their own.
    """
    running: list[RunningServer] = []
    app_id = f"bt{next(_app_ids)}"

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
        # Fixtures that skip when a system package is missing (redis-server, Dapr's binaries) come before
        # the socket: a skip after it would leave it open, and its ResourceWarning would fail whichever
        # later test the garbage collector happens to run in.
        if runtime == "dapr-real":
            control: LocalDapr = request.getfixturevalue("dapr_control_plane")
        if runtime in ("dapr", "dapr-real"):
            redis_url: str = request.getfixturevalue("redis_url")
        sock = socket.socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            port = sock.getsockname()[1]
            config = Settings(
                data_dir=data_dir or tmp_path,
                port=port,
                operator_key=SecretStr(api_key) if api_key else None,
                runtime="dapr" if runtime == "dapr-real" else runtime,
                **settings,
            )
            daprd = sidecar = None
            if runtime == "dapr":
                daprd, dapr_runtime = await _dapr_runtime(config, redis_url)
                app = create_app(config, dapr_runtime)
            elif runtime == "dapr-real":
                # daprd first: the app's start-up waits for it, and daprd connects once the app listens.
                name = f"daprd-{app_id}-{len(running)}"
                sidecar, dapr_runtime = _real_dapr_runtime(config, control, redis_url, app_id, name)
                app = create_app(config, dapr_runtime)
            else:
                app = create_app(config)
        except BaseException:
            sock.close()
            raise
        runtime = app.state.runtime
        changes: list[BannerChanged] = []
        runtime.add_listener(changes.append)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **uvicorn_options()))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            await eventually(lambda: server.started or task.done(), what="server start")
            if task.done():
                task.result()
            if sidecar is not None:
                await sidecar.wait_ready()
        except BaseException:
            server.should_exit = True
            if not server.started:
                task.cancel()  # still in its lifespan's start-up, which should_exit does not interrupt
            await asyncio.wait([task])
            sock.close()
            if sidecar is not None:
                await sidecar.stop()
            raise
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key and client_sends_key else None
        client = httpx.AsyncClient(
            base_url=url, timeout=30, headers=headers, limits=httpx.Limits(max_connections=500)
        )
        handle = RunningServer(
            url, client, runtime, changes, config.data_dir, app, server, task, daprd, sidecar
        )
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
