"""Onboarding a fleet: import banners from a CSV file into the embedded store, all or nothing.

`airdisplay banners import FILE.csv` reads `id,name` rows (a header line first), checks every row with
the same rules as the API, and writes them in one transaction of the store (`SqliteStore.bulk_import`):
a bad row (bad id or name, an id twice in the file, an id already registered) stops the import with its
line number and nothing is kept. State is written as the banner actor writes it: the banner as its JSON,
the device token's hash in the actors' state encoding.
Each banner gets a device token; the tokens go to a file of their own (`--tokens-out`), mode 0600,
because the database keeps only their hashes. The import holds the store's lock (actors/_lock.py) from
start to commit: it is refused (StoreInUse) while a server runs on the same data directory, and a server
started during an import is refused until it ends.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .actors import SqliteStore, StateImport, StoreError, StoreInUse, StoreLock, encode_state
from .domain import DomainError, register_banner
from .runtimes.behaviour import BANNER_KEY, DEVICE_TOKEN_KEY, new_device_token
from .runtimes.embedded import BANNER_ACTOR_TYPE, DATABASE_FILE, SEARCH_INDEX

#: Rows checked and written at a time: large enough to amortise the calls, small enough for a steady
#: progress line.
CHUNK_ROWS = 5_000


class FleetFileError(ValueError):
    """Raised when a row of the fleet file cannot be imported; nothing of the file is kept."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass(frozen=True)
class ImportResult:
    banners: int
    seconds: float


def read_fleet(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line number, id, name) for each data row; FleetFileError for a malformed file."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise FleetFileError(1, "the file is empty; expected a header line 'id,name'")
            if [h.strip().lower() for h in header] != ["id", "name"]:
                raise FleetFileError(1, f"the header must be 'id,name', not {','.join(header)!r}")
            for row in reader:
                if not row:
                    continue
                if len(row) != 2:
                    raise FleetFileError(reader.line_num, f"expected 2 fields (id,name), found {len(row)}")
                yield reader.line_num, row[0].strip(), row[1]
        except csv.Error as exc:
            raise FleetFileError(reader.line_num, f"not valid CSV: {exc}") from None
        except UnicodeDecodeError:
            raise FleetFileError(reader.line_num + 1, "not UTF-8 text (near this line)") from None


def import_fleet(
    data_dir: Path,
    source: Path,
    *,
    tokens_out: Path | None,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import every banner of `source` or none, under the store's lock; returns how many and how long."""
    with StoreLock(data_dir / DATABASE_FILE):
        return _import_fleet(data_dir, source, tokens_out=tokens_out, progress=progress)


def _import_fleet(
    data_dir: Path,
    source: Path,
    *,
    tokens_out: Path | None,
    progress: Callable[[int], None] | None,
) -> ImportResult:
    started = time.perf_counter()
    store = SqliteStore(data_dir / DATABASE_FILE)
    tokens = _TokenFile(tokens_out) if tokens_out is not None else None
    now = datetime.now(UTC)
    imported = 0
    try:
        # The server's search index is built here too (a no-op if it exists), not on its first start.
        with store.bulk_import(field_indexes=[SEARCH_INDEX]) as load:
            chunk: list[tuple[int, str, str]] = []
            for row in read_fleet(source):
                chunk.append(row)
                if len(chunk) == CHUNK_ROWS:
                    imported += _write_chunk(load, chunk, now, tokens)
                    chunk = []
                    if progress is not None:
                        progress(imported)
            if chunk:
                imported += _write_chunk(load, chunk, now, tokens)
            if imported == 0:
                raise FleetFileError(2, "the file has a header but no banners")
    except BaseException:
        if tokens is not None:
            tokens.discard()
        raise
    if tokens is not None:
        tokens.keep()
    return ImportResult(imported, time.perf_counter() - started)


def _write_chunk(
    load: StateImport, chunk: list[tuple[int, str, str]], now: datetime, tokens: _TokenFile | None
) -> int:
    seen: dict[str, int] = {}
    states: list[tuple[str, str, bytes]] = []
    for line, banner_id, name in chunk:
        try:
            banner = register_banner(banner_id, name, now)
        except DomainError as exc:
            raise FleetFileError(line, str(exc)) from None
        if banner.id in seen:
            raise FleetFileError(line, f"banner id {banner.id!r} is also on line {seen[banner.id]}")
        seen[banner.id] = line
        # The bytes the banner actor stores for it (runtimes/behaviour.py `_save`).
        states.append((banner.id, BANNER_KEY, banner.model_dump_json().encode()))
    taken = load.registered(BANNER_ACTOR_TYPE, BANNER_KEY, list(seen))
    if taken:
        first = min(seen[actor_id] for actor_id in taken)
        banner_id = next(b for b, line in seen.items() if line == first)
        raise FleetFileError(first, f"banner id {banner_id!r} is already registered (or earlier in the file)")
    if tokens is not None:
        for banner_id in seen:
            token, digest = new_device_token()
            tokens.write(banner_id, token)
            states.append((banner_id, DEVICE_TOKEN_KEY, encode_state(digest)))
    load.add(BANNER_ACTOR_TYPE, states)
    return len(seen)


class _TokenFile:
    """The device tokens of the import, written to a temporary file that replaces `path` on success."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.handle = os.fdopen(fd, "w", newline="", encoding="utf-8")
        self.writer = csv.writer(self.handle)
        self.writer.writerow(["id", "device_token"])

    def write(self, banner_id: str, token: str) -> None:
        self.writer.writerow([banner_id, token])

    def keep(self) -> None:
        self.handle.close()
        self.partial.replace(self.path)

    def discard(self) -> None:
        self.handle.close()
        self.partial.unlink(missing_ok=True)


__all__ = ["FleetFileError", "ImportResult", "StoreError", "StoreInUse", "import_fleet", "read_fleet"]
