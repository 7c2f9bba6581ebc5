"""Shared test helpers, so no test module imports another: waiting on conditions instead of sleeping; real
servers (in-process on a free port, or `airdisplay serve` subprocesses) and clients of their streams; a
real Redis and real Dapr for the session; skipping (failing under CI) where a system package is missing.

Plain helpers are imported (`from tests.conftest import eventually`); fixtures (`start_server`, `server`,
the Redis and Dapr ones) reach every package of tests/ from here. The real-Dapr fixtures are here, not in
tests/runtimes/dapr/conftest.py, because the behaviour suite needs them too: defined once here, the
session has one placement + scheduler whichever packages use it.

In-process servers run the runtimes "embedded" (SQLite in the data dir); "dapr", the Dapr SDK host behind
the daprd double of tests/runtimes/dapr/double.py; "dapr-real", the same app behind a real daprd
subprocess (tests/runtimes/dapr/conftest.py) joined to the session's placement + scheduler, its
components on the test's Redis.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
import pytest
import uvicorn
import websockets
from fastapi import FastAPI
from pydantic import SecretStr

from airdisplay.api import create_app
from airdisplay.cli import uvicorn_options
from airdisplay.config import Settings
from airdisplay.domain import BannerChanged
from airdisplay.runtimes.dapr._local import LocalDapr, dapr_bin_dir, missing_binaries

if TYPE_CHECKING:  # the Dapr helpers import this module, so `start_server` imports them when it needs them
    from airdisplay.runtimes import EmbeddedRuntime
    from tests.runtimes.dapr.conftest import RealDaprd
    from tests.runtimes.dapr.double import DaprdDouble

#: Upper bound for any condition a test waits on; generous for a loaded 2-core CI machine.
WAIT_LIMIT = 15.0
#: How often a condition on the test's own state is checked: a wait ends within 5 ms of it holding.
POLL_SECONDS = 0.005
#: How often a probe that is a request (an async probe) is repeated: often enough, without loading the
#: server it waits on.
REQUEST_POLL_SECONDS = 0.05
#: Longest a test waits for one frame of a stream.
FRAME_WAIT = 10.0


class FakeClock:
    """Unix seconds that move only when the test moves them (`clock.now += 0.3`): a runtime, host or limiter
    given it as its clock sees time pass exactly when the test says, however slow the machine."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _timed_out(what: str, limit: float, value: object) -> AssertionError:
    last = "" if isinstance(value, bool) else f" (last: {value!r})"
    return AssertionError(f"timed out after {limit}s waiting for {what}{last}")


async def eventually(
    probe: Callable[[], Any],
    check: Callable[[Any], object] = bool,
    *,
    limit: float = WAIT_LIMIT,
    what: str = "condition",
    every: float | None = None,
) -> Any:
    """Call `probe` until `check` holds for what it returns, and return that; fail naming `what` (and the
    last value) after `limit` seconds. `probe` may be sync (a look at the test's state, repeated every
    POLL_SECONDS) or async (a request, every REQUEST_POLL_SECONDS); `check` is the value's truth unless
    given."""
    deadline = time.monotonic() + limit
    while True:
        value = probe()
        awaited = inspect.isawaitable(value)
        if awaited:
            value = await value
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise _timed_out(what, limit, value)
        await asyncio.sleep(every if every is not None else REQUEST_POLL_SECONDS if awaited else POLL_SECONDS)


def wait_until(
    probe: Callable[[], Any],
    check: Callable[[Any], object] = bool,
    *,
    limit: float = WAIT_LIMIT,
    what: str = "condition",
    every: float = REQUEST_POLL_SECONDS,
) -> Any:
    """`eventually` for sync code, blocking between probes: the tests and fixtures of `airdisplay serve`
    subprocesses drive them with blocking clients and have no event loop to wait in."""
    deadline = time.monotonic() + limit
    while not check(value := probe()):
        if time.monotonic() > deadline:
            raise _timed_out(what, limit, value)
        time.sleep(every)
    return value


def skip_for_missing(reason: str) -> NoReturn:
    """Skip a test whose system package or binary is missing; fail instead where CI is set.

    A non-root developer may lack Debian's redis-server or chromium, or Go for Dapr's binaries: their tests
    skip and say why. CI installs them all (.ci/run), so there a skip would hide a broken set-up.
    """
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: tests must not be skipped for it)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[str]:
    """A real Redis on a free loopback port for the whole session (skips when redis-server is missing)."""
    binary = shutil.which("redis-server")
    if binary is None:
        skip_for_missing("redis-server is not installed (.ci/run installs Debian's redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _accepts(port), limit=10, what=f"redis-server on port {port}")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's Redis, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


@pytest.fixture(scope="session")
def dapr_bin() -> Path:
    """The directory holding daprd, placement and scheduler; skips (fails under CI) when they are missing."""
    where = dapr_bin_dir()
    if missing := missing_binaries(where):
        skip_for_missing(f"{', '.join(missing)} not found in {where}: run `make dapr` (it needs Go)")
    return where


@pytest.fixture(scope="session")
def dapr_control_plane(dapr_bin: Path, redis_server: str, tmp_path_factory) -> Iterator[LocalDapr]:
    """A started placement + scheduler on free loopback ports, without replicas; stopped at session end.

    Apps join it with `spawn_daprd` (or tests/runtimes/dapr/conftest.py's `RealDaprd`), each under an app id
    of its own, so their actors' state and Scheduler reminders never mix. Logs are in `logs/` of its work dir.
    """
    local = LocalDapr(tmp_path_factory.mktemp("dapr"), redis_server, replicas=0, bin_dir=dapr_bin)
    try:
        local.start()
        yield local
    finally:
        local.stop()


# -- `airdisplay serve` as a real process ------------------------------------------------------------

AIRDISPLAY = [sys.executable, "-m", "airdisplay"]
#: A subprocess server is ready well within this on a loaded 2-core machine (it imports the whole app).
SERVE_WAIT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`airdisplay serve *args`, its output (stdout and stderr) on `proc.stdout`."""
    return subprocess.Popen(
        [*AIRDISPLAY, "serve", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_ready(
    proc: subprocess.Popen[bytes], url: str, *, limit: float = SERVE_WAIT, log: Path | None = None
) -> None:
    """Until the server process `proc` answers 200 on `url`/readyz; fails with its output if it exits first
    (`log`: the file it writes to, when not to `proc.stdout`)."""

    def ready() -> bool:
        if proc.poll() is not None:
            output = log.read_text() if log else proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"the server exited with {proc.returncode}: {output}")
        try:
            return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, limit=limit, what=f"{url}/readyz to answer 200" + (f" (log: {log})" if log else ""))


def refused_line(*args: str, env: dict[str, str]) -> str:
    """Run `airdisplay serve ARGS` expecting it to refuse to start: exit 2 with one line; that line."""
    result = subprocess.run(
        [*AIRDISPLAY, "serve", *args], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    lines = (result.stderr + result.stdout).strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def stop(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM, then its output."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return out.decode()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- a real uvicorn server in the test's event loop, with a real HTTP client ------------------------


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
            # A device link's end marks its banner offline at once in tests (the grace has tests of its own).
            settings.setdefault("device_offline_grace", 0.0)
            config = Settings(
                data_dir=data_dir or tmp_path,
                port=port,
                operator_key=SecretStr(api_key) if api_key else None,
                runtime="dapr" if runtime == "dapr-real" else runtime,
                **settings,
            )
            daprd = sidecar = None
            if runtime == "dapr":
                from tests.runtimes.dapr.conftest import dapr_runtime_on_double

                daprd, dapr_runtime = await dapr_runtime_on_double(config, redis_url)
                app = create_app(config, dapr_runtime)
            elif runtime == "dapr-real":
                from tests.runtimes.dapr.conftest import dapr_runtime_on_daprd

                # daprd first: the app's start-up waits for it, and daprd connects once the app listens.
                name = f"daprd-{app_id}-{len(running)}"
                sidecar, dapr_runtime = dapr_runtime_on_daprd(config, control, redis_url, app_id, name)
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


# -- clients of a server's streams -----------------------------------------------------------------


class StreamClient:
    """A WebSocket client of /api/v1/stream that reads frames as JSON and can wait for a particular one."""

    def __init__(self, ws):
        self.ws = ws
        self.seen: list[dict] = []

    @classmethod
    async def connect(cls, server, query: str = "") -> StreamClient:
        url = server.url.replace("http://", "ws://") + "/api/v1/stream" + query
        return cls(await websockets.connect(url, max_size=2**22))

    async def send(self, **frame) -> None:
        await self.ws.send(json.dumps(frame))

    async def next(self, *, skip_pings: bool = True) -> dict:
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), FRAME_WAIT))
            self.seen.append(frame)
            if not (skip_pings and frame["type"] == "ping"):
                return frame

    async def until(self, predicate) -> dict:
        while True:
            frame = await self.next()
            if predicate(frame):
                return frame

    async def banner_frames(self, banner_id: str, count: int) -> list[dict]:
        found = []
        while len(found) < count:
            frame = await self.next()
            if frame["type"] == "banner" and frame["banner_id"] == banner_id:
                found.append(frame)
        return found

    async def close(self) -> None:
        await self.ws.close()


async def connect_device(server, banner_id: str, token: str | None):
    """A device link of `banner_id`, with `token` as its credential (None: none sent)."""
    url = server.url.replace("http://", "ws://") + f"/api/v1/devices/{banner_id}/connect"
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return await websockets.connect(url, additional_headers=headers)


async def recv(ws) -> dict:
    """The next frame of a WebSocket, as JSON."""
    return json.loads(await asyncio.wait_for(ws.recv(), FRAME_WAIT))
