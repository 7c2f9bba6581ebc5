"""A real, small file system that a test can fill: how the disk-full tests run out of space.

A tmpfs mount with a size limit fails writes with ENOSPC exactly like a full disk (SQLite reports
SQLITE_FULL, or SQLITE_IOERR_SHMSIZE for its WAL index). Mounting needs root, so the tests skip without it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_disk(mount: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (as mount writes it: "4m") on `mount` for the block; skips the test if it can't."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root (CI runs as root)")
    mount.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path, name: str = "filler") -> Path:
    """Write a file until the file system is full; returns it."""
    filler = directory / name
    with open(filler, "ab", buffering=0) as out:
        for size in (65536, 4096, 1):  # big blocks, then the last few bytes too
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * size)
    return filler


def free_bytes(directory: Path) -> int:
    """Bytes free on the file system that holds `directory`."""
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize
