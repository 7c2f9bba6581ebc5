"""Content policy: words and patterns a fleet will not put in the sky.

Text is compared in a folded form so that simple look-alike tricks do not slip through: compatibility
forms become plain letters (NFKC: fullwidth "ＢＡＤ", ligatures, superscripts), case is folded, and
accents are dropped ("bäd" is "bad"). Plain entries match whole words or phrases; entries written as
`re:<pattern>` are regular expressions over the folded text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from .exceptions import TextNotAllowed

REGEX_PREFIX = "re:"


def fold(text: str) -> str:
    """The form texts and plain entries are compared in."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    stripped = "".join(c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c))
    return " ".join(stripped.split())


class ContentPolicy:
    """A compiled blocklist; empty allows everything."""

    __slots__ = ("_entries", "_pattern")

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self._entries: list[tuple[str, re.Pattern[str]]] = []
        for raw in entries:
            entry = raw.strip()
            if not entry or entry.startswith("#"):
                continue
            if entry.startswith(REGEX_PREFIX):
                source = entry[len(REGEX_PREFIX) :]
                if not source:
                    raise ValueError("an empty re: pattern would refuse every text")
                try:
                    compiled = re.compile(source, re.IGNORECASE)
                except re.error as exc:
                    raise ValueError(f"bad pattern {source!r}: {exc}") from None
                self._entries.append((source, compiled))
            else:
                words = fold(entry)
                self._entries.append((entry, re.compile(rf"(?<!\w){re.escape(words)}(?!\w)")))

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, text: str) -> None:
        """Raise TextNotAllowed naming the first entry the text matches."""
        if not self._entries:
            return
        folded = fold(text)
        for entry, pattern in self._entries:
            if pattern.search(folded):
                raise TextNotAllowed(entry)
