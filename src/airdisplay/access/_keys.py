"""API keys: roles, the keys file and its operator marker, and how many bits a start-up key holds.

A key looks like `adk_<id>_<secret>`. The id is public (it names the key in `airdisplay keys list` and
lets the check find the one record to compare); the secret is 256 random bits, shown once when the key
is created and stored only as its SHA-256. A fast hash is the right one here: the secret is random, not
a password, so there is nothing to brute-force from the hash. The server compares with
`hmac.compare_digest` (`_keyring.py`).

The keys file (`keys.json` in the data directory, mode 0600) is written by the CLI and read by the
server (`_keyring.py`), which picks up changes within a second without a restart. Beside it, the marker
`operator-key-required` records that an operator key has existed in this data directory: from then on,
losing the keys (the last one revoked, the file deleted) locks operator routes instead of opening them.
Only `airdisplay keys allow-open` removes it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from ..domain import format_time
from .exceptions import KeyFileError, OperatorKeysRemain, UnknownKey

KEYS_FILE = "keys.json"
#: How often the server looks at the keys file's mtime: a new or revoked key takes effect this fast.
RELOAD_SECONDS = 1.0
OPERATOR_MARKER = "operator-key-required"
_MARKER_TEXT = (
    "An operator key has existed in this AirDisplay data directory, so operator routes need one even when\n"
    "none is left. 'airdisplay keys allow-open' removes this file (docs/security.md).\n"
)
KEY_PATTERN = re.compile(r"^adk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
#: A key given at start-up to a server that others can reach must hold at least this many bits: a
#: guessing attacker then needs ~2^127 tries. 32 hex digits ('openssl rand -hex 16') hold 128.
MIN_KEY_BITS = 128
_HEX = (frozenset(string.digits + "abcdef"), frozenset(string.digits + "ABCDEF"))
#: Character classes and their sizes; '-' and '_' are a class of their own, base64url's two symbols.
_CLASSES = (
    (frozenset(string.digits), 10),
    (frozenset(string.ascii_lowercase), 26),
    (frozenset(string.ascii_uppercase), 26),
    (frozenset("-_"), 2),
    (frozenset(string.punctuation + " ") - frozenset("-_"), 31),
)


class Role(StrEnum):
    """What a key may do. An operator may do everything a submitter may."""

    OPERATOR = "operator"
    SUBMITTER = "submitter"

    def allows(self, needed: Role) -> bool:
        return self is Role.OPERATOR or self is needed


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: the key's id (or "env" for a start-up key that is no stored key) and its role."""

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


def digest(secret: str) -> bytes:
    """The SHA-256 of a key's secret, as stored and compared."""
    return hashlib.sha256(secret.encode()).digest()


def key_bits(key: str) -> int:
    """At most how many random bits `key` holds: its length times log2 of its alphabet.

    The alphabet is the hex digits when the key is hex, else the union of the character classes it uses
    (any non-ASCII character counts 128 more). An upper bound: it stops short keys and keys drawn from
    few characters; it cannot see that a long key of words is guessable.
    """
    chars = frozenset(key)
    if not chars:
        return 0
    if not key.isdigit() and any(chars <= hex_digits for hex_digits in _HEX):
        alphabet = 16
    else:
        alphabet = sum(size for members, size in _CLASSES if chars & members)
        alphabet += 128 if not key.isascii() else 0
    return math.floor(len(key) * math.log2(alphabet))


class KeysFile:
    """The keys file of a data directory: create, list and revoke keys (the CLI's side)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / KEYS_FILE
        self.marker = data_dir / OPERATOR_MARKER

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
        if role is Role.OPERATOR:
            self.record_operator()  # first: a crash between the two leaves operator routes locked
        self._save([*records, record])
        return record, f"adk_{key_id}_{secret}"

    def revoke(self, key_id: str) -> KeyRecord:
        """Remove a key; the server refuses it within RELOAD_SECONDS."""
        records = self.load()
        kept = [r for r in records if r.id != key_id]
        if len(kept) == len(records):
            raise UnknownKey(key_id)
        if any(r.role is Role.OPERATOR for r in records):
            self.record_operator()  # a keys file of an older version has operator keys but no marker
        self._save(kept)
        return next(r for r in records if r.id == key_id)

    def operator_recorded(self) -> bool:
        """True when an operator key has existed here, so operator routes stay locked without one."""
        try:
            self.marker.stat()
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError:
            return True  # cannot tell: the answer that keeps operator routes locked
        return True

    def record_operator(self) -> None:
        """Record that an operator key exists here (OSError when the data directory is not writable)."""
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(_MARKER_TEXT)
            out.flush()
            os.fsync(out.fileno())

    def allow_open(self) -> bool:
        """Forget that an operator key existed, so that a loopback server without one leaves operator routes
        open again; False when there was nothing to forget. OperatorKeysRemain while operator keys exist."""
        remaining = [r.id for r in self.load() if r.role is Role.OPERATOR]
        if remaining:
            raise OperatorKeysRemain(remaining)
        try:
            self.marker.unlink()
        except FileNotFoundError:
            return False
        return True

    def _save(self, records: list[KeyRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"keys": [r.to_json() for r in records]}, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)  # atomic: the server never reads half a file
