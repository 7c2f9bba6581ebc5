"""Opening the SQLite store: clear errors for files and directories it cannot use."""

from __future__ import annotations

import os
import sqlite3

import pytest

from airdisplay.actors import SqliteStore, StoreError


def test_new_database_is_created_in_wal_mode(tmp_path):
    SqliteStore(tmp_path / "new" / "actors.db").verify()
    with sqlite3.connect(tmp_path / "new" / "actors.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_corrupt_file_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "actors.db"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="cannot use .*actors.db"):
        SqliteStore(path).verify()


def test_another_programs_database_is_refused(tmp_path):
    path = tmp_path / "actors.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StoreError, match="another program"):
        SqliteStore(path).verify()


def test_data_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot create data directory"):
        SqliteStore(tmp_path / "file" / "actors.db").verify()


def test_database_path_that_is_a_directory_is_refused(tmp_path):
    (tmp_path / "actors.db").mkdir()
    with pytest.raises(StoreError, match="is a directory"):
        SqliteStore(tmp_path / "actors.db").verify()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_read_only_directory_is_refused(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(StoreError):
            SqliteStore(tmp_path / "actors.db").verify()
    finally:
        tmp_path.chmod(0o700)
