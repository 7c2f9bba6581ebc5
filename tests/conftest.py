"""Shared test helpers: waiting on conditions instead of sleeping; a real Redis and real Dapr for the session;
skipping (failing under CI) where a system package they need is missing.

The real-Dapr fixtures are here, not in tests/dapr/conftest.py, because the behaviour suite needs them too:
defined once here, the session has one placement + scheduler whichever packages use it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from airdisplay.runtimes.dapr._local import LocalDapr, dapr_bin_dir, missing_binaries

#: Upper bound for any condition a test waits on; generous for a loaded 2-core CI machine.
WAIT_LIMIT = 15.0


async def eventually(
    predicate: Callable[[], bool], *, limit: float = WAIT_LIMIT, what: str = "condition"
) -> None:
    """Wait until `predicate()` holds, checking often; fail with `what` after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit}s waiting for {what}")
        await asyncio.sleep(0.005)


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
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise
            time.sleep(0.02)
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

    Apps join it with `spawn_daprd` (or tests/dapr/conftest.py's `RealDaprd`), each under an app id of its
    own, so their actors' state and Scheduler reminders never mix. Logs are in `logs/` of its work dir.
    """
    local = LocalDapr(tmp_path_factory.mktemp("dapr"), redis_server, replicas=0, bin_dir=dapr_bin)
    try:
        local.start()
        yield local
    finally:
        local.stop()
