"""One writer process per store: an OS lock on a file beside the database, held for the writer's life.

The actor host keeps each active actor's state in memory and writes it back; it assumes nothing else writes
the same database. Two processes on one database would each accept writes and overwrite the other's
(issue 13: two servers on one data directory both answered 201). So a process that writes a store first
takes its lock, and a second one is refused, naming the holder's pid.

The lock is `flock` on `<database>.lock`, which the kernel releases when the holder's file is closed, so
also when the process is killed (kill -9, OOM): there is no stale lock to clean up. The file itself is
left in place (deleting it would let two processes lock two different files of the same name); it holds
the holder's pid, for the message only: the lock, not the file's content, says whether the store is taken.
The descriptor is not inherited by programs the holder starts (Python opens files close-on-exec).
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from .exceptions import StoreError, StoreInUse

LOCK_SUFFIX = ".lock"
#: The holder writes its pid right after taking the lock; a refused process that reads the file in between
#: finds it empty and reads again for up to this long (the gap is one write call, microseconds).
PID_WAIT_SECONDS = 0.5


class LockState(enum.Enum):
    RELEASED = "released"
    HELD = "held"


class StoreLock:
    """This process's exclusive hold on a store's database; `with StoreLock(path):` or acquire/release."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = database.with_name(database.name + LOCK_SUFFIX)
        self.state = LockState.RELEASED
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (creating the data directory if needed); StoreInUse if another process holds it."""
        if self.state is not LockState.RELEASED:
            raise RuntimeError(
                f"store lock {self.path} must be released to acquire it, not {self.state.value}"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create data directory {self.path.parent}: {exc.strerror}") from None
        try:
            # No O_TRUNC: the file may hold the current holder's pid, which a refusal reports.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder_pid(fd)
            os.close(fd)
            raise StoreInUse(self.database, pid) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {self.path}: {exc.strerror}") from None
        # The pid only feeds a refused process's message: a full disk must not stop the holder starting
        # (it then serves read-only, see _store.py).
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        self.state = LockState.HELD

    def release(self) -> None:
        """Give the lock up; the file stays, empty."""
        if self.state is not LockState.HELD or self._fd is None:
            raise RuntimeError(f"store lock {self.path} must be held to release it, not {self.state.value}")
        fd, self._fd = self._fd, None
        self.state = LockState.RELEASED
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the last descriptor of the open file ends the flock

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _holder_pid(fd: int) -> int | None:
    deadline = time.monotonic() + PID_WAIT_SECONDS
    while True:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text or time.monotonic() > deadline:
            return int(text) if text.isdigit() else None
        time.sleep(0.01)
