"""Storage faults against a real server: a locked database and a full disk answer 503, change nothing,
and the service recovers by itself when the fault clears."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from airdisplay.runtimes.embedded import DATABASE_FILE

#: The store waits this long for a lock (PRAGMA busy_timeout in actors/_store.py) before giving up.
BUSY_TIMEOUT_S = 5


def assert_storage_problem(response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/storage-unavailable")
    assert int(response.headers["retry-after"]) >= 1
    assert "Traceback" not in response.text


@pytest.mark.timeout(60)
async def test_a_locked_database_answers_503_changes_nothing_and_recovers(server):
    await server.create("l1")
    before = (await server.client.get("/api/v1/banners/l1")).json()
    other = sqlite3.connect(server.data_dir / DATABASE_FILE, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")  # another program holds the write lock past our busy timeout
        refused = await server.client.post("/api/v1/banners/l1/message", json={"text": "locked out"})
        assert_storage_problem(refused)
        assert (await server.client.get("/api/v1/banners/l1")).json() == before
    finally:
        other.execute("ROLLBACK")
        other.close()
    shown = await server.client.post("/api/v1/banners/l1/message", json={"text": "back again"})
    assert shown.status_code == 201
    assert (await server.client.get("/api/v1/banners/l1")).json()["message"]["text"] == "back again"


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A real 4 MiB filesystem (tmpfs) that the test can fill; needs root to mount."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; returns it."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as out:
        for size in (65536, 4096, 1):  # big blocks, then the last few bytes too
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * size)
    return filler


@pytest.mark.timeout(60)
async def test_a_full_disk_answers_503_changes_nothing_and_recovers(start_server, small_disk):
    server = await start_server(data_dir=small_disk)
    ids = [f"d{i}" for i in range(60)]
    for banner_id in ids:
        await server.create(banner_id)
    filler = fill(small_disk)
    try:
        refused_id = None
        for banner_id in ids:  # the WAL grows with each commit, so some write soon needs a page it can't get
            response = await server.client.post(f"/api/v1/banners/{banner_id}/message", json={"text": "hi"})
            if response.status_code != 201:
                assert_storage_problem(response)
                refused_id = banner_id
                break
        assert refused_id is not None, "no write failed on a full disk"
        refused = (await server.client.get(f"/api/v1/banners/{refused_id}")).json()
        assert refused["message"] is None and refused["version"] == 1
    finally:
        filler.unlink()
    assert (await server.client.get("/readyz")).status_code == 200
    shown = await server.client.post(f"/api/v1/banners/{refused_id}/message", json={"text": "space again"})
    assert shown.status_code == 201
    await server.stop()
    # What was acknowledged before the fault and after it is on disk; the refused write never was.
    restarted = await start_server(data_dir=small_disk)
    banner = (await restarted.client.get(f"/api/v1/banners/{refused_id}")).json()
    assert banner["message"]["text"] == "space again" and banner["version"] == 2
    await restarted.stop()
