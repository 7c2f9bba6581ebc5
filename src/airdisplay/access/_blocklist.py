"""The content blocklist file: loaded at start-up, reloaded when the operator edits it."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..domain import ContentPolicy
from ._keys import RELOAD_SECONDS
from .exceptions import BlocklistError

log = logging.getLogger("airdisplay.access")


class Blocklist:
    """The current ContentPolicy of a blocklist file (one word, phrase or `re:` pattern per line)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._policy = ContentPolicy()
        self._mtime_ns: int | None = None
        self._checked_at = time.monotonic()
        if path is not None:
            self._policy, self._mtime_ns = self._load(path)

    @property
    def policy(self) -> ContentPolicy:
        """The policy in force; a changed file is picked up within RELOAD_SECONDS."""
        if self.path is not None:
            now = time.monotonic()
            if now - self._checked_at >= RELOAD_SECONDS:
                self._checked_at = now
                self._maybe_reload(self.path)
        return self._policy

    def _maybe_reload(self, path: Path) -> None:
        try:
            if path.stat().st_mtime_ns == self._mtime_ns:
                return
            self._policy, self._mtime_ns = self._load(path)
            log.info("blocklist %s reloaded: %d entries", path, len(self._policy))
        except (OSError, BlocklistError) as exc:
            # A bad edit keeps the previous list in force rather than letting everything through.
            log.error("keeping the previous blocklist: %s", exc)

    @staticmethod
    def _load(path: Path) -> tuple[ContentPolicy, int]:
        try:
            mtime = path.stat().st_mtime_ns
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise BlocklistError(f"cannot read blocklist {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise BlocklistError(f"blocklist {path} is not UTF-8 text") from None
        try:
            return ContentPolicy(lines), mtime
        except ValueError as exc:
            raise BlocklistError(f"blocklist {path}: {exc}") from None
