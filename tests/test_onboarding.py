"""Bulk import of a fleet from CSV: fast, all or nothing, a bad row named by its line."""

from __future__ import annotations

import csv
import sqlite3
import stat
import subprocess
import sys

import pytest

from airdisplay import onboarding
from airdisplay.domain import BannerRules
from airdisplay.onboarding import FleetFileError, import_fleet
from airdisplay.runtimes import EmbeddedRuntime


def write_csv(path, rows, header="id,name"):
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def banner_count(data_dir) -> int:
    db = data_dir / "airdisplay.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM actor_state WHERE key='banner'").fetchone()[0]


async def test_imported_banners_are_served_with_working_device_tokens(tmp_path):
    source = write_csv(tmp_path / "fleet.csv", [f"b{i:04d},Banner {i}" for i in range(1200)])
    result = import_fleet(tmp_path / "data", source, tokens_out=tmp_path / "tokens.csv")
    assert result.banners == 1200
    with (tmp_path / "tokens.csv").open() as handle:
        tokens = list(csv.DictReader(handle))
    assert len(tokens) == 1200 and stat.S_IMODE((tmp_path / "tokens.csv").stat().st_mode) == 0o600
    runtime = EmbeddedRuntime(tmp_path / "data", BannerRules())
    await runtime.start()
    try:
        page = await runtime.list_banners(after=None, limit=500)
        assert [b.id for b in page[:2]] == ["b0000", "b0001"] and page[1].name == "Banner 1"
        checked = await runtime.authenticate_device(tokens[7]["id"], tokens[7]["device_token"])
        assert checked.id == "b0007"
        shown = await runtime.submit_message("b0042", "imported and live")
        assert shown.banner.version == 2
    finally:
        await runtime.stop()


@pytest.mark.parametrize(
    ("rows", "line", "expected"),
    [
        (["good-1,One", "Bad Id,Two"], 3, "not a slug"),
        (["good-1,One", "good-2,"], 3, "name is empty"),
        (["good-1,One", "good-2,Two,extra"], 3, "expected 2 fields"),
        (["good-1,One", "good-2,Two", "good-1,Again"], 4, "also on line 2"),
        (["good-1,One", "good-2,tab\tinside"], 3, "non-printable"),
    ],
    ids=["bad id", "empty name", "extra field", "duplicate in file", "control character"],
)
def test_a_bad_row_is_named_and_nothing_is_imported(tmp_path, rows, line, expected):
    source = write_csv(tmp_path / "fleet.csv", rows)
    with pytest.raises(FleetFileError) as failure:
        import_fleet(tmp_path / "data", source, tokens_out=tmp_path / "tokens.csv")
    assert failure.value.line == line and expected in str(failure.value)
    assert banner_count(tmp_path / "data") == 0
    assert not (tmp_path / "tokens.csv").exists() and not (tmp_path / "tokens.csv.partial").exists()


def test_duplicates_across_chunks_and_registered_ids_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(onboarding, "CHUNK_ROWS", 10)
    data = tmp_path / "data"
    import_fleet(data, write_csv(tmp_path / "first.csv", ["taken,Already here"]), tokens_out=None)
    rows = [f"n{i:02d},N {i}" for i in range(25)]
    with pytest.raises(FleetFileError, match="line 24: banner id 'n05'"):
        import_fleet(data, write_csv(tmp_path / "dup.csv", [*rows[:22], "n05,Again"]), tokens_out=None)
    with pytest.raises(FleetFileError, match="line 14: banner id 'taken' is already registered"):
        import_fleet(data, write_csv(tmp_path / "clash.csv", [*rows[:12], "taken,Clash"]), tokens_out=None)
    assert banner_count(data) == 1


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"name,id\nx,y\n", "header"),
        (b"id,name\n", "no banners"),
        (b"id,name\nb1,\xff\xfe\n", "UTF-8"),
    ],
    ids=["empty file", "wrong header", "header only", "not utf-8"],
)
def test_malformed_files_are_refused(tmp_path, content, expected):
    source = tmp_path / "fleet.csv"
    source.write_bytes(content)
    with pytest.raises(FleetFileError, match=expected):
        import_fleet(tmp_path / "data", source, tokens_out=None)
    assert banner_count(tmp_path / "data") == 0


def run_import(source, data_dir) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airdisplay", "banners", "import", str(source), "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_reports_the_line_and_exits_non_zero(tmp_path):
    result = run_import(write_csv(tmp_path / "fleet.csv", ["ok-1,One", "NOT OK,Two"]), tmp_path / "d")
    assert result.returncode == 2
    assert "line 3" in result.stderr and "nothing was imported" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_import(write_csv(tmp_path / "good.csv", ["ok-1,One", "ok-2,Two"]), tmp_path / "d")
    assert result.returncode == 0 and "imported 2 banners" in result.stdout


def test_the_import_builds_the_search_index_so_the_first_start_does_not(tmp_path):
    source = write_csv(tmp_path / "fleet.csv", ["s1,Alpha", "s2,Beta"])
    import_fleet(tmp_path / "data", source, tokens_out=None)
    with sqlite3.connect(tmp_path / "data" / "airdisplay.db") as conn:
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "state_banner_name" in indexes
