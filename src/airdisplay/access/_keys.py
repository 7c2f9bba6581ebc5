"""API keys: roles, the keys file, and checking a presented key in constant time.

A key looks like `adk_<id>_<secret>`. The id is public (it names the key in `airdisplay keys list` and
lets the check find the one record to compare); the secret is 256 random bits, shown once when the key
is created and stored only as its SHA-256. A fast hash is the right one here: the secret is random, not
a password, so there is nothing to brute-force from the hash. Comparison is `hmac.compare_digest`.

The keys file (`keys.json` in the data directory, mode 0600) is written by the CLI and read by the
server, which picks up changes within `RELOAD_SECONDS` without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from ..domain import format_time
from .exceptions import KeyFileError, UnknownKey

log = logging.getLogger("airdisplay.access")

KEYS_FILE = "keys.json"
#: How often the server looks at the keys file's mtime: a new or revoked key takes effect this fast.
RELOAD_SECONDS = 1.0
_KEY = re.compile(r"^adk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


class Role(StrEnum):
    """What a key may do. An operator may do everything a submitter may."""

    OPERATOR = "operator"
    SUBMITTER = "submitter"

    def allows(self, needed: Role) -> bool:
        return self is Role.OPERATOR or self is needed


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: the key's id (or "env" for AIRDISPLAY_OPERATOR_KEY) and its role."""

    key_id: str
    role: Role


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored key: never the secret itself, only its hash."""

    id: str
    role: Role
    secret_sha256: str
    label: str
    created_at: str

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "role": self.role.value,
            "secret_sha256": self.secret_sha256,
            "label": self.label,
            "created_at": self.created_at,
        }


def _written(created_at: str) -> str:
    """A stored creation time as the service writes times; files from older versions hold `+00:00`."""
    try:
        return format_time(datetime.fromisoformat(created_at))
    except ValueError:
        return created_at  # not a time we wrote: show it as it is


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class KeysFile:
    """The keys file of a data directory: create, list and revoke keys (the CLI's side)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / KEYS_FILE

    def load(self) -> list[KeyRecord]:
        """The stored keys; none when the file does not exist."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return [
                KeyRecord(
                    id=str(item["id"]),
                    role=Role(item["role"]),
                    secret_sha256=str(item["secret_sha256"]),
                    label=str(item.get("label", "")),
                    created_at=_written(str(item.get("created_at", ""))),
                )
                for item in raw["keys"]
            ]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise KeyFileError(f"cannot read {self.path}: {exc.strerror}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(f"{self.path} is not an AirDisplay keys file: {exc}") from None

    def create(self, role: Role, label: str = "") -> tuple[KeyRecord, str]:
        """Add a key; returns its record and the full key, which is never stored and cannot be shown again."""
        records = self.load()
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        record = KeyRecord(
            id=key_id,
            role=role,
            secret_sha256=hashlib.sha256(secret.encode()).hexdigest(),
            label=label,
            created_at=format_time(datetime.now(UTC).replace(microsecond=0)),
        )
        self._save([*records, record])
        return record, f"adk_{key_id}_{secret}"

    def revoke(self, key_id: str) -> KeyRecord:
        """Remove a key; the server refuses it within RELOAD_SECONDS."""
        records = self.load()
        kept = [r for r in records if r.id != key_id]
        if len(kept) == len(records):
            raise UnknownKey(key_id)
        self._save(kept)
        return next(r for r in records if r.id == key_id)

    def _save(self, records: list[KeyRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"keys": [r.to_json() for r in records]}, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)  # atomic: the server never reads half a file


class KeyRing:
    """The keys a server accepts: the keys file (reloaded when it changes) plus an optional start-up key."""

    def __init__(self, data_dir: Path, operator_key: str | None = None) -> None:
        self._file = KeysFile(data_dir)
        self._env_digest = _digest(operator_key) if operator_key else None
        self._records: dict[str, tuple[Role, bytes]] = {}
        self._mtime_ns: int | None = None
        self._checked_at = float("-inf")
        self._reload()

    @property
    def has_operator(self) -> bool:
        """True when some operator credential exists, so operator routes are closed to everyone else."""
        self._maybe_reload()
        return self._env_digest is not None or any(r is Role.OPERATOR for r, _ in self._records.values())

    def verify(self, presented: str) -> Principal | None:
        """The principal a presented key belongs to, or None if it is no valid key."""
        self._maybe_reload()
        found = _KEY.match(presented)
        if found is not None:
            record = self._records.get(found.group(1))
            if record is not None and hmac.compare_digest(_digest(found.group(2)), record[1]):
                return Principal(found.group(1), record[0])
            return None
        if self._env_digest is not None and hmac.compare_digest(_digest(presented), self._env_digest):
            return Principal("env", Role.OPERATOR)
        return None

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked_at >= RELOAD_SECONDS:
            self._checked_at = now
            try:
                self._reload()
            except KeyFileError as exc:
                # A broken edit must not lock the operator out: keep the keys we had, say why.
                log.error("keeping the previous keys: %s", exc)

    def _reload(self) -> None:
        try:
            mtime = self._file.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        except OSError:
            return  # keep the keys we have; the next check tries again
        if mtime == self._mtime_ns:
            return
        self._records = {r.id: (r.role, bytes.fromhex(r.secret_sha256)) for r in self._file.load()}
        self._mtime_ns = mtime
