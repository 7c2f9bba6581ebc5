"""A real daprd as the sidecar of an app under test, joined to the session's placement + scheduler.

The session fixtures `dapr_bin` and `dapr_control_plane` live in tests/conftest.py: the behaviour suite
needs them too, and defined once the whole session shares one control plane.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from airdisplay.runtimes.dapr._local import LocalDapr, write_components
from tests.conftest import WAIT_LIMIT

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
        deadline = time.monotonic() + limit
        async with httpx.AsyncClient(base_url=self.url, timeout=1.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"daprd exited with {self.proc.returncode}; see {self.log}")
                try:
                    health = await client.get("/v1.0/healthz")
                    actors = (await client.get("/v1.0/metadata")).json().get("actorRuntime", {})
                    if health.status_code == 204 and actors.get("hostReady") and actors.get("activeActors"):
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"daprd at {self.url} not ready after {limit}s; see {self.log}")
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """SIGTERM, then kill after DAPRD_STOP_SECONDS."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, DAPRD_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)
