"""The keys a running server accepts, and when operator routes are open without one.

Operator routes are open without a key only in the try-it-out mode: a server that listens on loopback,
trusts no proxy, has no operator key and never had one in its data directory. Behind a trusted proxy
every request may come from anywhere (the proxy connects from loopback whoever the client is), so there
is no such mode. Once an operator key has existed, losing it (revoked, keys file deleted, a restart
without it) locks operator routes until a new key is created or `airdisplay keys allow-open` is run.
"""

from __future__ import annotations

import hmac
import logging
import time
from pathlib import Path

from ._keys import KEY_PATTERN, RELOAD_SECONDS, KeysFile, Principal, Role, digest
from .exceptions import KeyFileError, StartupKeyError

log = logging.getLogger("airdisplay.access")

_CREATE = "create one with 'airdisplay keys create --role operator' (the running server picks it up)"


class KeyRing:
    """The keys a server accepts: the keys file (reloaded when it changes) plus an optional start-up key.

    A start-up key in the `adk_<id>_<secret>` shape of a key stored in the keys file is that key: revoking
    it there revokes it here too. Any other start-up key is an operator secret of its own ("env").
    """

    def __init__(self, data_dir: Path, operator_key: str | None = None, *, record: bool = True) -> None:
        """`record=False` for a look before start-up that must leave the data directory as it is."""
        self._file = KeysFile(data_dir)
        self._record = record
        self._env_digest: bytes | None = None
        self._records: dict[str, tuple[Role, bytes]] = {}
        self._mtime_ns: int | None = None
        self._checked_at = float("-inf")
        self._recorded = False  # the data directory's marker exists
        self._unrecorded = False  # an operator key was seen but the marker could not be written
        self._reload()
        if operator_key:
            self._env_digest = self._start_up_key(operator_key)
        if self._has_operator():
            self._record_operator()

    @property
    def has_operator(self) -> bool:
        """True when some operator credential exists, so operator routes are closed to everyone else."""
        self._maybe_reload()
        return self._has_operator()

    @property
    def operator_required(self) -> bool:
        """True when operator routes need an operator key: one exists, or one existed in the data dir."""
        self._maybe_reload()
        return self._has_operator() or self._recorded or self._unrecorded

    def verify(self, presented: str) -> Principal | None:
        """The principal a presented key belongs to, or None if it is no valid key."""
        self._maybe_reload()
        found = KEY_PATTERN.match(presented)
        if found is not None and (record := self._records.get(found.group(1))) is not None:
            if hmac.compare_digest(digest(found.group(2)), record[1]):
                return Principal(found.group(1), record[0])
            return None
        if self._env_digest is not None and hmac.compare_digest(digest(presented), self._env_digest):
            return Principal("env", Role.OPERATOR)
        return None

    def _start_up_key(self, key: str) -> bytes | None:
        """The digest to hold for a start-up key; None when it is a stored operator key (kept in the file)."""
        found = KEY_PATTERN.match(key)
        record = self._records.get(found.group(1)) if found is not None else None
        if found is None or record is None:
            return digest(key)
        role, stored = record
        if not hmac.compare_digest(digest(found.group(2)), stored):
            raise StartupKeyError(
                f"it names key {found.group(1)} of {self._file.path} but is not that key (its secret differs)"
            )
        if role is not Role.OPERATOR:
            raise StartupKeyError(f"it is {role.value} key {found.group(1)}; give an operator key")
        return None

    def _has_operator(self) -> bool:
        return self._env_digest is not None or any(r is Role.OPERATOR for r, _ in self._records.values())

    def _record_operator(self) -> None:
        """Write the marker that keeps operator routes locked once the keys are lost."""
        if self._recorded or not self._record:
            return
        try:
            self._file.record_operator()
        except OSError as exc:
            if not self._unrecorded:
                log.warning(
                    "cannot record in %s that an operator key exists (%s): if every operator key is lost, "
                    "a restart would open operator routes to this machine again",
                    self._file.marker,
                    exc.strerror,
                )
            self._unrecorded = True
        else:
            self._recorded = True

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
        self._recorded = self._file.operator_recorded()  # `keys allow-open` takes effect live too
        try:
            mtime = self._file.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        except OSError:
            return  # keep the keys we have; the next check tries again
        if mtime == self._mtime_ns:
            return
        had_operator = self._has_operator()
        self._records = {r.id: (r.role, bytes.fromhex(r.secret_sha256)) for r in self._file.load()}
        self._mtime_ns = mtime
        if self._has_operator():
            self._record_operator()
        elif had_operator:
            log.warning("no operator key is left: operator routes refuse everyone until you %s", _CREATE)


def operator_routes_open(keys: KeyRing, *, loopback: bool, proxied: bool) -> bool:
    """True in the try-it-out mode: operator routes need no key (see the module's docstring)."""
    return loopback and not proxied and not keys.operator_required


def operator_notice(keys: KeyRing, *, host: str, loopback: bool, proxied: bool) -> str | None:
    """What the server should warn about its operator routes at start-up; None when a key guards them."""
    if keys.has_operator or not loopback:
        return None
    if proxied:
        return (
            "no operator key: operator routes refuse everyone, because requests through the trusted proxy "
            f"(--forwarded-allow-ips) may come from anywhere; {_CREATE}"
        )
    if keys.operator_required:
        return (
            "no operator key is left, but this data directory had one: operator routes refuse everyone "
            f"until you {_CREATE}, or go back to the open try-it-out mode with 'airdisplay keys allow-open'"
        )
    return (
        f"no operator key: operator routes are open to anyone on this machine (listening on {host} only), "
        "and to anyone a proxy or tunnel forwards here without --forwarded-allow-ips; "
        "create one with 'airdisplay keys create --role operator'"
    )
