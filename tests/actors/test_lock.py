"""The store lock: one writer process per database; refusals name the holder; released locks are free again.

flock locks belong to an open file, not a process, so two StoreLocks in this one process contend as two
processes would; tests/test_data_dir_lock.py covers real servers, imports and kill -9.
"""

from __future__ import annotations

import os

import pytest

from airdisplay.actors import StoreError
from airdisplay.actors._lock import LockState, StoreInUse, StoreLock


def test_second_lock_on_a_store_is_refused_naming_the_holder_pid(tmp_path):
    database = tmp_path / "data" / "airdisplay.db"
    with StoreLock(database) as held:
        assert held.state is LockState.HELD
        with pytest.raises(StoreInUse) as refused:
            StoreLock(database).acquire()
    assert refused.value.pid == os.getpid()
    assert str(os.getpid()) in str(refused.value)
    assert isinstance(refused.value, StoreError)  # callers that handle store errors handle this one too


def test_a_released_lock_can_be_taken_again_and_keeps_no_pid(tmp_path):
    database = tmp_path / "airdisplay.db"
    first = StoreLock(database)
    first.acquire()
    assert first.path.read_text() == f"{os.getpid()}\n"
    first.release()
    assert first.state is LockState.RELEASED and first.path.read_text() == ""
    with StoreLock(database):
        pass


def test_the_lock_creates_the_data_directory_and_names_one_it_cannot_create(tmp_path):
    with StoreLock(tmp_path / "new" / "airdisplay.db") as held:
        assert held.path == tmp_path / "new" / "airdisplay.db.lock"
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create data directory"):
        StoreLock(tmp_path / "file" / "airdisplay.db").acquire()


def test_releasing_a_lock_not_held_names_the_expected_state(tmp_path):
    lock = StoreLock(tmp_path / "airdisplay.db")
    with pytest.raises(RuntimeError, match="must be held"):
        lock.release()
    lock.acquire()
    with pytest.raises(RuntimeError, match="must be released"):
        lock.acquire()
    lock.release()
