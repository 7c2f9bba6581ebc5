"""A real daprd as the sidecar of an app under test, joined to the session's placement + scheduler; the
Dapr runtime of tests/conftest.py's `start_server`, on the daprd double or a real daprd.

The session fixtures `dapr_bin` and `dapr_control_plane` live in tests/conftest.py: the behaviour suite
needs them too, and defined once the whole session shares one control plane.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from dapr.actor.runtime.runtime import ActorRuntime

from airdisplay.config import Settings
from airdisplay.runtimes.dapr import DaprRuntime
from airdisplay.runtimes.dapr._local import LocalDapr, write_components
from tests.conftest import WAIT_LIMIT, eventually
from tests.runtimes.dapr.double import DaprdDouble

#: On SIGTERM daprd deactivates its actors through the app and leaves placement (well under a second
#: here); past this it is killed.
DAPRD_STOP_SECONDS = 5.0


@dataclass
class RealDaprd:
    """A daprd subprocess serving one app; `url` is its HTTP API (the app's `dapr_url`)."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @classmethod
    def start(
        cls,
        control: LocalDapr,
        app_id: str,
        app_port: int,
        redis_url: str,
        components: Path,
        name: str,
        app_api_token: str | None = None,
    ) -> RealDaprd:
        """Spawn daprd for the app on `app_port`, its components (written to `components`) on `redis_url`.

        The app need not listen yet: daprd waits for its port, then reads /dapr/config and registers the
        actor types with placement.
        """
        write_components(redis_url, components)
        env = {"APP_API_TOKEN": app_api_token} if app_api_token else None
        proc, http_port = control.spawn_daprd(app_id, app_port, resources=components, name=name, env=env)
        return cls(proc, f"http://127.0.0.1:{http_port}", control.logs / f"{name}.log")

    async def wait_ready(self, limit: float = WAIT_LIMIT) -> None:
        """Until daprd is healthy (app channel up) and its actor runtime hosts the app's actor types."""
        async with httpx.AsyncClient(base_url=self.url, timeout=1.0) as client:

            async def ready() -> bool:
                if self.proc.poll() is not None:
                    raise AssertionError(f"daprd exited with {self.proc.returncode}; see {self.log}")
                try:
                    health = await client.get("/v1.0/healthz")
                    actors = (await client.get("/v1.0/metadata")).json().get("actorRuntime", {})
                except httpx.HTTPError:
                    return False
                hosting = actors.get("hostReady") and actors.get("activeActors")
                return health.status_code == 204 and bool(hosting)

            await eventually(ready, limit=limit, what=f"daprd at {self.url} ready; see {self.log}")

    async def stop(self) -> None:
        """SIGTERM, then kill after DAPRD_STOP_SECONDS."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, DAPRD_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)


async def dapr_runtime_on_double(config: Settings, redis_url: str) -> tuple[DaprdDouble, DaprRuntime]:
    """The Dapr runtime against the daprd double (see tests/runtimes/dapr/double.py) and a real Redis."""
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


def dapr_runtime_on_daprd(
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
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A client for the real cluster's replicas (test_real_cluster.py, test_real_bookings.py)."""
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=300)) as client:
        yield client
