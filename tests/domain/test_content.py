"""Content policy: look-alike spellings of blocked entries are refused, innocent text is not."""

from __future__ import annotations

import pytest

from airdisplay.domain import ContentPolicy, TextNotAllowed

#: The blocklist the tester of issue 18 attacked.
ATTACKED = ContentPolicy(["badword", "two words", r"re:fr[e3]{2}\s*money"])

#: 30 spellings of the three entries that got through (17 of them) before look-alikes were folded.
EVASIONS = [
    # invisible joiners and fillers inside a word
    ("combining grapheme joiner U+034F", "bad\u034fword"),
    ("variation selector-16 U+FE0F", "bad\ufe0fword"),
    ("hangul filler U+3164", "bad\u3164word"),
    ("khmer inherent vowel U+17B4", "bad\u17b4word"),
    ("braille blank U+2800", "bad\u2800word"),
    ("soft hyphen U+00AD", "bad\u00adword"),
    ("joiner between every letter", "b\u034fa\u034fd\u034fw\u034fo\u034fr\u034fd"),
    ("filler in a pattern's match", "fr\ufe0fee money"),
    # letters of other scripts that look like Latin ones
    ("cyrillic a and o", "b\u0430dw\u043erd"),
    ("cyrillic e in a pattern's match", "fr\u0435e money"),
    ("greek alpha and omicron", "b\u03b1dw\u03bfrd"),
    ("cyrillic capitals", "\u0412\u0410DW\u041eRD"),
    ("greek omicron in a phrase", "tw\u03bf w\u03bfrds"),
    ("fullwidth and cyrillic mixed", "\uff42\u0430dword"),
    # the word glued to digits or underscores
    ("trailing underscore", "badword_"),
    ("trailing digit", "badword1"),
    ("wrapped in underscores", "__badword__"),
    ("year appended", "badword2026"),
    # letters spelled out one by one
    ("spaced", "b a d w o r d"),
    ("dotted", "b.a.d.w.o.r.d"),
    ("hyphenated", "b-a-d-w-o-r-d"),
    ("underscored", "b_a_d_w_o_r_d"),
    ("spaced capitals with dots", "B . A . D . W . O . R . D"),
    ("spaced in a pattern's match", "f r e e money"),
    # digits and symbols for letters
    ("leet", "b4dw0rd"),
    ("one leet letter", "badw0rd"),
    ("leet with symbols", "8@dw0rd"),
    ("leet in a phrase", "tw0 w0rds"),
    # a phrase run together
    ("phrase without its space", "twowords"),
    ("phrase joined by a hyphen", "two-words"),
]


def got_through(policy: ContentPolicy, text: str) -> bool:
    try:
        policy.check(text)
    except TextNotAllowed:
        return False
    return True


@pytest.mark.parametrize(("kind", "text"), EVASIONS, ids=[kind for kind, _ in EVASIONS])
def test_look_alike_spellings_of_a_blocked_entry_are_refused(kind, text):
    assert len(EVASIONS) == 30
    with pytest.raises(TextNotAllowed):
        ATTACKED.check(f"hi {text} there")


@pytest.mark.parametrize(
    "text",
    [
        "BADWORD",
        "a ｂａｄｗｏｒｄ here",
        "bädword",
        "b̷a̷d̷w̷o̷r̷d̷",
        "𝐛𝐚𝐝𝐰𝐨𝐫𝐝",
        "Two  Words",
        "fr33money",
    ],
)
def test_the_spellings_refused_before_are_still_refused(text):
    with pytest.raises(TextNotAllowed):
        ATTACKED.check(text)


#: Entries that innocent text can come close to.
COMMON = ContentPolicy(["ass", "hell", "bum", "badword", "two words"])


@pytest.mark.parametrize(
    "text",
    [
        "badwords are fine",  # another word: letters on either side keep the word-boundary semantics
        "unbadword",
        "bad word",  # two words are not one: separators are folded only between single letters
        "bad-word",
        "Class of 2026",
        "Hello world",
        "Shell station",
        "Burn the midnight oil",  # skeleton("burn") == skeleton("bum"): ASCII is never folded as a look-alike
        "Compass heading 4 north",
        "Samsung A55 on sale",  # leet needs at least half the letters to be letters: a code is not a word
        "Flight 455 delayed",
        "as S. Smith said",  # single letters are joined only to single letters
        "Plan B, a success",
        "two wordsmiths",
        "Zürich ✈ 12:30",
        "Привет, мир",
        "Καλημέρα σας",
        "안녕하세요 🇫🇷🇩🇪",
        "Happy birthday Ana!",
        "U.S.A. 4 ever",
    ],
)
def test_innocent_text_near_a_blocked_entry_is_allowed(text):
    COMMON.check(text)


def test_the_refusal_names_the_first_entry_in_file_order():
    policy = ContentPolicy(["# comment", "re:^never", "badword", "re:w[o0]rd"])
    with pytest.raises(TextNotAllowed) as refused:
        policy.check("b4dw0rd")
    assert refused.value.entry == "badword"
    with pytest.raises(TextNotAllowed) as refused:
        policy.check("a w0rd")
    assert refused.value.entry == "w[o0]rd"


def test_a_phrase_of_single_letters_matches_however_it_is_spelled():
    policy = ContentPolicy(["w t f"])
    for text in ["WTF", "w.t.f.", "w t f", "wtf!"]:
        with pytest.raises(TextNotAllowed):
            policy.check(text)
    policy.check("wtfs")


def test_patterns_in_another_script_still_match_that_script():
    policy = ContentPolicy(["re:пр[иі]вет", "слово"])
    with pytest.raises(TextNotAllowed):
        policy.check("Привет, мир")
    with pytest.raises(TextNotAllowed):
        policy.check("СЛОВО")
    policy.check("привычка")


@pytest.mark.parametrize("entry", ["\u200b", "\u3164\u2800", "***", "  -  "])
def test_an_entry_with_nothing_to_match_is_refused_rather_than_blocking_everything(entry):
    with pytest.raises(ValueError, match="nothing to match"):
        ContentPolicy(["fine", entry])


def test_an_entry_after_a_byte_order_mark_still_matches():
    with pytest.raises(TextNotAllowed):
        ContentPolicy(["\ufeffbadword"]).check("badword")


def test_an_empty_policy_allows_everything():
    ContentPolicy().check("b\u0430dword \u3164")
