"""Storage faults against a real server: a locked database and a full disk answer 503, change nothing,
and the service recovers by itself when the fault clears. A full disk makes /readyz answer 503 with the
reason until writes succeed again, and a server started on a full disk serves reads."""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from airdisplay.actors import _store
from airdisplay.runtimes.embedded import DATABASE_FILE
from tests.api.conftest import sse
from tests.conftest import eventually
from tests.small_disk import fill, free_bytes, small_disk

#: The store waits this long for a lock (PRAGMA busy_timeout in actors/_store.py) before giving up.
BUSY_TIMEOUT_S = 5
#: Writes resume within a probe interval of space coming back (PROBE_SECONDS, 1 s); generous here.
READY_WAIT = 15.0


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
        # A lock is another program's and passes: it does not make the service refuse writes.
        assert (await server.client.get("/readyz")).status_code == 200
    finally:
        other.execute("ROLLBACK")
        other.close()
    shown = await server.client.post("/api/v1/banners/l1/message", json={"text": "back again"})
    assert shown.status_code == 201
    assert (await server.client.get("/api/v1/banners/l1")).json()["message"]["text"] == "back again"


@pytest.fixture
def disk(tmp_path) -> Iterator[Path]:
    """A real 4 MiB file system (tests/small_disk.py)."""
    with small_disk(tmp_path / "disk", "4m") as mount:
        yield mount


async def ready_again(server) -> None:
    """Until /readyz answers 200 once more; fail after READY_WAIT seconds with its last answer."""

    async def readiness() -> tuple[int, str]:
        response = await server.client.get("/readyz")
        return response.status_code, response.text

    await eventually(
        readiness, lambda answer: answer[0] == 200, limit=READY_WAIT, what="/readyz to answer 200 again"
    )


def assert_not_ready_for_a_full_disk(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    detail = response.json()["detail"]
    assert "disk" in detail and "full" in detail and "reads still work" in detail, detail


@pytest.mark.timeout(60)
async def test_a_full_disk_answers_503_changes_nothing_and_recovers(start_server, disk, monkeypatch):
    """Checkpoints are turned off (CHECKPOINT_SECONDS an hour), so that each commit grows the WAL and one
    soon needs a block the full disk does not have. With them on, a slow run (CI's) checkpointed between
    commits, the WAL reused its own space, and 60 writes on a full disk all fitted."""
    monkeypatch.setattr(_store, "CHECKPOINT_SECONDS", 3600.0)
    server = await start_server(data_dir=disk)
    ids = [f"d{i}" for i in range(60)]
    for banner_id in ids:
        await server.create(banner_id)
    filler = fill(disk)
    try:
        refused_id = None
        for banner_id in ids:  # the WAL grows with each commit, so some write soon needs a block it can't get
            response = await server.client.post(f"/api/v1/banners/{banner_id}/message", json={"text": "hi"})
            if response.status_code != 201:
                assert_storage_problem(response)
                refused_id = banner_id
                break
        assert refused_id is not None, "no write failed on a full disk"
        refused = (await server.client.get(f"/api/v1/banners/{refused_id}")).json()
        assert refused["message"] is None and refused["version"] == 1
        assert_not_ready_for_a_full_disk(await server.client.get("/readyz"))
    finally:
        filler.unlink()
    await ready_again(server)
    shown = await server.client.post(f"/api/v1/banners/{refused_id}/message", json={"text": "space again"})
    assert shown.status_code == 201
    await server.stop()
    # What was acknowledged before the fault and after it is on disk; the refused write never was.
    restarted = await start_server(data_dir=disk)
    banner = (await restarted.client.get(f"/api/v1/banners/{refused_id}")).json()
    assert banner["message"]["text"] == "space again" and banner["version"] == 2
    await restarted.stop()


#: Issue 18: with the disk full and a WAL that no checkpoint had copied, freeing this much let 9 of 30
#: writes fail again: the WAL took the space back before a checkpoint could shrink it.
FREED = 400 * 1024
#: Free space left for the WAL to fill before the disk is full again (a few dozen commits' pages).
HEADROOM = 1024 * 1024


@pytest.mark.timeout(90)
async def test_space_freed_on_a_full_disk_shrinks_the_wal_before_writes_resume(
    start_server, disk, monkeypatch
):
    """The state of the report: no checkpoint ran while the WAL grew until the disk was full.

    Checkpoints are turned off (CHECKPOINT_SECONDS an hour) to reach that state every time; in the report
    the disk filled between two of them.
    """
    first = await start_server(data_dir=disk)
    ids = [f"w{i:03}" for i in range(200)]
    await asyncio.gather(*(first.create(banner_id) for banner_id in ids))
    await first.stop()
    monkeypatch.setattr(_store, "CHECKPOINT_SECONDS", 3600.0)
    server = await start_server(data_dir=disk)
    filler = fill(disk)
    os.truncate(filler, filler.stat().st_size - HEADROOM)
    shown: dict[str, str] = {}
    waiting = iter(ids)
    for banner_id in waiting:
        response = await server.client.post(f"/api/v1/banners/{banner_id}/message", json={"text": banner_id})
        if response.status_code != 201:
            assert_storage_problem(response)
            break
        shown[banner_id] = banner_id
    else:
        raise AssertionError("the WAL never filled the disk")
    assert_not_ready_for_a_full_disk(await server.client.get("/readyz"))
    wal = disk / f"{DATABASE_FILE}-wal"
    assert wal.stat().st_size > HEADROOM // 2  # the WAL holds what filled the disk

    os.truncate(filler, filler.stat().st_size - FREED)
    await ready_again(server)
    assert wal.stat().st_size < FREED  # checkpointed and truncated: its space is free again
    assert free_bytes(disk) > HEADROOM
    for banner_id in itertools.islice(waiting, 30):
        response = await server.client.post(f"/api/v1/banners/{banner_id}/message", json={"text": banner_id})
        assert response.status_code == 201, response.text
        shown[banner_id] = banner_id
    assert (await server.client.get("/readyz")).status_code == 200
    await server.stop()
    restarted = await start_server(data_dir=disk)
    for banner_id, text in shown.items():
        banner = (await restarted.client.get(f"/api/v1/banners/{banner_id}")).json()
        assert banner["message"]["text"] == text, banner_id


@pytest.mark.timeout(60)
async def test_a_server_restarted_on_a_full_disk_starts_read_only(start_server, disk):
    first = await start_server(data_dir=disk)
    await first.create("r1")
    await first.client.post("/api/v1/banners/r1/message", json={"text": "kept"})
    await first.stop()
    # A clean stop leaves no WAL index file (-shm), so the restart has to do without creating one.
    assert sorted(p.name for p in disk.iterdir() if p.name.startswith(DATABASE_FILE)) == [DATABASE_FILE]
    filler = fill(disk)

    server = await start_server(data_dir=disk)
    assert_not_ready_for_a_full_disk(await server.client.get("/readyz"))
    banner = (await server.client.get("/api/v1/banners/r1")).json()
    assert banner["message"]["text"] == "kept"
    listed = (await server.client.get("/api/v1/banners")).json()
    assert [b["id"] for b in listed["items"]] == ["r1"]
    async with sse(server, "/api/v1/banners/r1/events") as stream:
        snapshot = await stream.next_event()
        assert snapshot["data"]["banner"]["message"]["text"] == "kept"
    refused = await server.client.post("/api/v1/banners", json={"id": "r2", "name": "New"})
    assert_storage_problem(refused)
    assert "disk full" in refused.json()["detail"]
    assert "airdisplay_store_writable 0.0" in (await server.client.get("/metrics")).text

    filler.unlink()
    await ready_again(server)
    await server.create("r2")
    assert "airdisplay_store_writable 1.0" in (await server.client.get("/metrics")).text
    await server.stop()
    restarted = await start_server(data_dir=disk)
    assert (await restarted.client.get("/api/v1/banners/r2")).status_code == 200
