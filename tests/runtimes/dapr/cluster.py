"""The real Dapr cluster the tests of test_real_cluster.py and test_real_bookings.py run against:
a redis-server of its own, two replicas through LocalDapr (`airdisplay dapr local`), and the clients
that drive and watch them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import websockets

from airdisplay.runtimes.dapr._local import LocalDapr, free_port
from tests.conftest import wait_until


@dataclass
class RedisProcess:
    """A redis-server of the cluster's own, with an append-only file so that a restart keeps its data."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed (.ci/run installs Debian's redis-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
        )

        def answers() -> bool:
            ping = ["redis-cli", "-p", str(self.port), "ping"]
            try:
                return subprocess.run(ping, capture_output=True, timeout=2).stdout.startswith(b"PONG")
            except subprocess.TimeoutExpired:
                return False

        wait_until(answers, limit=10, what=f"redis-server on port {self.port} to answer PING")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: redis flushes its append-only file and exits
            self.proc.wait(timeout=15)


@contextlib.contextmanager
def running_cluster(
    workdir: Path,
    message_seconds: float,
    redis: RedisProcess | None = None,
    app_env: dict[str, str] | None = None,
    bookings_per_client: int = 0,
) -> Iterator[LocalDapr]:
    own_redis = redis is None
    redis = redis or RedisProcess(workdir / "redis")
    if own_redis:
        redis.start()
    # The submit rate limit and the booking quota are per client address, and every request here comes
    # from 127.0.0.1: off unless a test is about the quota.
    serve_args = (
        "--message-seconds",
        str(message_seconds),
        "--submit-rate",
        "0",
        "--bookings-per-client",
        str(bookings_per_client),
    )
    cluster = LocalDapr(workdir, redis.url, serve_args=serve_args, app_env=app_env or {})
    try:
        cluster.start()
        yield cluster
    except BaseException:
        for name in ("app-0", "daprd-0", "app-1", "daprd-1", "scheduler"):
            print(f"--- {name}.log\n{cluster.tail(name)}")
        raise
    finally:
        cluster.stop()
        if own_redis:
            redis.stop()


async def create(http: httpx.AsyncClient, base: str, banner_id: str, name: str = "Real Dapr") -> dict:
    response = await http.post(f"{base}/api/v1/banners", json={"id": banner_id, "name": name})
    assert response.status_code == 201, response.text
    return response.json()


async def submit(
    http: httpx.AsyncClient, base: str, banner_id: str, text: str, **headers: str
) -> httpx.Response:
    return await http.post(f"{base}/api/v1/banners/{banner_id}/message", json={"text": text}, headers=headers)


async def banners_through(http: httpx.AsyncClient, base: str, ids: list[str]) -> list[httpx.Response] | None:
    """GET each banner through `base`; None when a request got no answer, for the caller to poll again.

    A pooled keep-alive connection that the server closes (idle for its 5 s keep-alive timeout) just as the
    client reuses it gives a ReadError: a race of the client's pool, not a lost answer (it failed the kill -9
    test once, in a fresh-clone CI run; the same test passed in the runs before and after)."""
    try:
        return list(await asyncio.gather(*(http.get(f"{base}/api/v1/banners/{i}") for i in ids)))
    except httpx.TransportError:
        return None


async def all_free(http: httpx.AsyncClient, base: str, ids: list[str]) -> bool:
    """Every banner of `ids` answers through `base` with no message and no booking waiting (False while a
    request gets no answer, for the caller to poll again)."""
    replies = await banners_through(http, base, ids)
    return replies is not None and all(
        r.status_code == 200 and r.json()["message"] is None and r.json()["queue"] == [] for r in replies
    )


class Stream:
    """A WebSocket client of /api/v1/stream that records every banner frame it gets."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, base: str, banner_ids: list[str]) -> Stream:
        url = base.replace("http://", "ws://") + "/api/v1/stream?banners=" + ",".join(banner_ids)
        return cls(await websockets.connect(url))

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame.get("type") == "banner":
                    self.frames.append(frame)

    def of(self, banner_id: str, kind: str | None = None) -> list[dict]:
        return [f for f in self.frames if f["banner_id"] == banner_id and (kind is None or f["kind"] == kind)]

    async def close(self) -> None:
        await self.ws.close()
        await self._reader
