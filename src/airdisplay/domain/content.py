"""Content policy: words and patterns a fleet will not put in the sky.

Text is compared in a folded form, so that a spelling that looks like a blocked entry matches it:

- compatibility forms become plain letters (NFKD: fullwidth `ＢＡＤ`, ligatures, mathematical letters),
  accents and other combining marks are dropped (`bäd`, `b̷a̷d`), case is folded;
- letters of other scripts that look like Latin letters or digits become those: each character whose
  prototype in Unicode's confusables (UTS #39), or its capital's, is ASCII takes it (Cyrillic `а`, `В`,
  Greek `ο`). ASCII itself is never folded this way: the skeleton of `burn` is `bum`;
- invisible code points (Default_Ignorable_Code_Point, and blank glyphs such as U+2800) are dropped; a text
  that holds some is read a second time with each run of them as a space, since some show as a gap;
- letters spelled out one at a time are joined (`b a d`, `b.a.d`, `b_a_d` read `bad`): only runs of single
  letters or digits, so that ordinary words next to each other stay apart.

Plain entries match whole words: a letter on either side makes another word (`badwords`), a digit or an
underscore does not (`badword1`, `badword_`). Each letter of a plain entry also matches the digits and
symbols written for it (`b4dw0rd`), as long as at least half of the word is letters (`A55` is a code, not a
word); the words of a phrase match with any separators or none between them (`two-words`, `twowords`).
Entries written as `re:<pattern>` are regular expressions over the folded text; a pattern that holds
non-ASCII letters is also tried on the text folded without look-alikes, so patterns in other scripts work.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import regex

from .exceptions import TextNotAllowed

REGEX_PREFIX = "re:"

#: Glyphs that show nothing but are not Default_Ignorable_Code_Point: U+2800 BRAILLE PATTERN BLANK and
#: U+1D159 MUSICAL SYMBOL NULL NOTEHEAD, the two that lists of "invisible characters" pass around.
BLANK_GLYPHS = "\u2800\U0001d159"
_INVISIBLE = regex.compile(rf"[\p{{Default_Ignorable_Code_Point}}{BLANK_GLYPHS}]+")
_VISIBLE = regex.compile(rf"[^\s\p{{Default_Ignorable_Code_Point}}{BLANK_GLYPHS}]")
#: Accents and other marks that stack on a letter (canonical combining class not 0).
_COMBINING = regex.compile(r"\P{Canonical_Combining_Class=Not_Reordered}+")

#: Digits and symbols written for letters ("leet"); only these, so that ordinary codes stay codes.
LEET = {
    "a": "4@",
    "b": "8",
    "e": "3",
    "g": "9",
    "i": "1!|",
    "l": "1|",
    "o": "0",
    "s": "5$",
    "t": "7+",
    "z": "2",
}

#: A letter or digit standing alone, then more of them, each after 1-3 separators: "b a d", "b.a.d", "B - A".
_SPELLED_OUT = re.compile(r"(?<![^\W_])[^\W_](?:[\W_]{1,3}[^\W_](?![^\W_]))+")
_SEPARATORS = re.compile(r"([\W_]+)")
_ALNUM = re.compile(r"[^\W_]")
_NOT_LETTER = r"[^\W\d_]"


def _lookalike_table() -> dict[int, str]:
    """Case-folded non-ASCII characters that look like ASCII, as a str.translate table.

    A character takes its UTS #39 prototype when that is ASCII, else the prototype of its capital: the
    skeleton is case-sensitive (Cyrillic `В` is `B`, `в` is `ʙ`), the comparison is not. confusable-homoglyphs
    ships confusables.txt as JSON with each line stored both ways; a character that is a source has exactly
    one neighbour, its prototype (a prototype maps to itself, never onwards).
    """
    data = json.loads(
        resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8")
    )
    prototypes: dict[str, str] = {}
    for char, glyphs in data.items():
        if len(char) != 1 or char.isascii() or len(glyphs) != 1:
            continue
        prototype = glyphs[0]["c"]
        if prototype.isascii() and prototype.isprintable() and not prototype.isspace():
            prototypes[char] = prototype.lower()
    table = {ord(char): prototype for char, prototype in prototypes.items() if char == char.casefold()}
    for char, prototype in prototypes.items():
        folded = char.casefold()
        if len(folded) == 1 and not folded.isascii():
            table.setdefault(ord(folded), prototype)
    return table


_LOOKALIKES = _lookalike_table()


def is_invisible(text: str) -> bool:
    """True when nothing in `text` shows: only spaces, default-ignorable code points and blank glyphs."""
    return _VISIBLE.search(text) is None


def _without_marks(text: str) -> str:
    return _COMBINING.sub("", unicodedata.normalize("NFKD", text))


def _join_spelled_out(text: str) -> str:
    return _SPELLED_OUT.sub(lambda spelled: "".join(_ALNUM.findall(spelled.group())), text)


def readings(text: str) -> tuple[str, ...]:
    """The folded forms of `text` the entries are matched against: one, or two if it holds invisibles."""
    folded = text.lower() if text.isascii() else _without_marks(text).casefold()
    if folded.isascii():  # the common case, and accented Latin once the accents are gone
        forms = [folded]
    else:
        folded = folded.translate(_LOOKALIKES)
        if _INVISIBLE.search(folded) is None:
            forms = [folded]
        else:
            forms = [_INVISIBLE.sub("", folded), _INVISIBLE.sub(" ", folded)]
    return tuple(_join_spelled_out(" ".join(form.split())) for form in forms)


def fold(text: str) -> str:
    """The main form texts and plain entries are compared in (invisible code points dropped)."""
    return readings(text)[0]


def _plain_fold(text: str) -> str:
    """`text` folded without look-alikes or joining, for `re:` patterns written in other scripts."""
    return " ".join(_INVISIBLE.sub("", _without_marks(text).casefold()).split())


def _whole(pattern: str) -> re.Pattern[str]:
    """`pattern` where no letter touches it on either side."""
    return re.compile(rf"(?<!{_NOT_LETTER})(?:{pattern})(?!{_NOT_LETTER})")


def _trie(sequences: Iterable[Iterable[str]]) -> str:
    """One pattern matching any of `sequences` of unit patterns, with shared prefixes merged."""
    root: dict[str, dict[str, Any]] = {}
    for units in sequences:
        node = root
        for unit in units:
            node = node.setdefault(unit, {})
        node[""] = {}

    def branch(node: dict[str, dict[str, Any]]) -> str:
        alternatives = [unit + branch(rest) for unit, rest in node.items() if unit]
        if not alternatives:
            return ""
        body = alternatives[0] if len(alternatives) == 1 else f"(?:{'|'.join(alternatives)})"
        return f"(?:{body})?" if "" in node else body

    return branch(root)


def _letter_pattern(char: str) -> str:
    stand_ins = LEET.get(char)
    return f"[{re.escape(char + stand_ins)}]" if stand_ins else re.escape(char)


@dataclass(frozen=True, slots=True)
class _Word:
    """A plain entry: a word or phrase, matched whole, letters or their stand-ins."""

    entry: str
    units: tuple[str, ...]  # the pattern, one letter class or separator run at a time
    pattern: re.Pattern[str]
    letters: int

    @classmethod
    def compile(cls, entry: str) -> _Word:
        pieces = [piece for piece in _SEPARATORS.split(fold(entry)) if piece]
        if not any(piece[0].isalnum() for piece in pieces):
            raise ValueError(f"entry {entry!r} has nothing to match: it needs a letter or a digit")
        units: list[str] = []
        for at, piece in enumerate(pieces):
            if piece[0].isalnum():
                units += (_letter_pattern(c) for c in piece)
            elif 0 < at < len(pieces) - 1:
                units.append(r"[\W_]*")  # between words: any separators or none ("two-words", "twowords")
            else:
                units.append(re.escape(piece))  # at an end, symbols are part of the entry ("@ss", "a$$")
        letters = sum(c.isalpha() for piece in pieces for c in piece)
        return cls(entry, tuple(units), _whole("".join(units)), letters)

    def found(self, folded: str, plain: str) -> bool:
        for match in self.pattern.finditer(folded):
            stand_ins = self.letters - sum(c.isalpha() for c in match.group())
            if 2 * stand_ins <= self.letters:
                return True
        return False


@dataclass(frozen=True, slots=True)
class _Pattern:
    """A `re:` entry, over the folded text (and the plain fold too when it is written in another script)."""

    entry: str
    pattern: re.Pattern[str]
    other_script: bool

    @classmethod
    def compile(cls, source: str) -> _Pattern:
        if not source:
            raise ValueError("an empty re: pattern would refuse every text")
        try:
            compiled = re.compile(source, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"bad pattern {source!r}: {exc}") from None
        return cls(source, compiled, not source.isascii())

    def found(self, folded: str, plain: str) -> bool:
        if self.pattern.search(folded):
            return True
        return self.other_script and self.pattern.search(plain) is not None


class ContentPolicy:
    """A compiled blocklist; empty allows everything."""

    __slots__ = ("_entries", "_patterns", "_any_word", "_other_script")

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self._entries: list[_Word | _Pattern] = []
        for raw in entries:
            entry = raw.strip().lstrip("\ufeff")
            if not entry or entry.startswith("#"):
                continue
            if entry.startswith(REGEX_PREFIX):
                self._entries.append(_Pattern.compile(entry[len(REGEX_PREFIX) :]))
            else:
                self._entries.append(_Word.compile(entry))
        self._patterns = [e for e in self._entries if isinstance(e, _Pattern)]
        self._other_script = any(e.other_script for e in self._patterns)
        words = [e.units for e in self._entries if isinstance(e, _Word)]
        # One pass over the text finds whether any plain entry might match; only then are they tried one by
        # one (for the stand-in rule and the name of the entry). The entries share prefixes in a trie, so
        # that the pass tries a few branches at each word start rather than every entry.
        self._any_word = _whole(_trie(words)) if words else None

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, text: str) -> None:
        """Raise TextNotAllowed naming the first entry (in file order) the text matches."""
        if not self._entries:
            return
        plain = _plain_fold(text) if self._other_script else ""
        for folded in readings(text):
            for entry in self._candidates(folded):
                if entry.found(folded, plain):
                    raise TextNotAllowed(entry.entry)

    def _candidates(self, folded: str) -> Sequence[_Word | _Pattern]:
        if self._any_word is not None and self._any_word.search(folded) is not None:
            return self._entries
        return self._patterns
