"""What the content checks cost on the submit path: the blocklist check and the text rules, per call.

In-process, no server: a blocklist of 100 entries (90 words, 6 phrases, 4 `re:` patterns, made up from
a fixed seed) and 64-character texts of four kinds (plain ASCII, accented and emoji text, a text the list
refuses, a look-alike evasion). Each figure is the best and the median of 7 rounds of `--calls` calls,
in microseconds per call. The submit path runs `ContentPolicy.check` once and `BannerRules.clean_text`
once per request.

    uv run python bench/content_policy.py [--calls 20000] [--json PATH]
"""

from __future__ import annotations

import argparse
import random
import statistics
import string
import sys
import timeit
from collections.abc import Callable

from _report import machine, table, wait_for_quiet_machine, write_json
from airdisplay.domain import BannerRules, ContentPolicy, TextNotAllowed

ENTRIES = 100
ROUNDS = 7
SEED = 18

#: Every text is 64 characters long (code points; the emoji text is 62 user-perceived characters).
TEXTS = {
    "ASCII, allowed": "Happy birthday Ana! Meet us at gate 12 for cake at 15:30, love P",
    "accents and emoji, allowed": "Zürich ✈ São Paulo: bon voyage, Łukasz & Zoë! 🎉🎂 À bientôt, Anna",
    "ASCII, refused": "Happy birthday Ana! Meet us at gate 12 for cake, you old badword",
    "look-alike, refused": "Happy birthday Ana! Meet us at gate 12 for cake, you old bаdwоrd",
}


def blocklist() -> list[str]:
    """100 entries: made-up words and phrases, a few patterns, and the word the refused texts hold."""
    rng = random.Random(SEED)

    def word() -> str:
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 9)))

    entries = ["badword"]
    entries += [word() for _ in range(89)]
    entries += [f"{word()} {word()}" for _ in range(6)]
    entries += [f"re:{word()}[0-9]+", f"re:fr[e3]{{2}}\\s*{word()}", f"re:{word()}\\W*{word()}", "re:x{3,}"]
    assert len(entries) == ENTRIES
    return entries


def per_call_us(call: Callable[[], object], calls: int) -> tuple[float, float]:
    """Best and median microseconds per call over ROUNDS rounds."""
    rounds = timeit.repeat(call, number=calls, repeat=ROUNDS)
    return min(rounds) / calls * 1e6, statistics.median(rounds) / calls * 1e6


def checker(policy: ContentPolicy, text: str) -> Callable[[], object]:
    def check() -> object:
        try:
            policy.check(text)
        except TextNotAllowed:
            return False
        return True

    return check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round")
    parser.add_argument("--json", help="write the figures as JSON to this path")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    args = parser.parse_args()
    waited = "" if args.no_wait else wait_for_quiet_machine()
    policy = ContentPolicy(blocklist())
    empty = ContentPolicy()
    rules = BannerRules()
    rows = []
    figures = {}
    for kind, text in TEXTS.items():
        refused = not checker(policy, text)()
        check_best, check_median = per_call_us(checker(policy, text), args.calls)
        empty_best, _ = per_call_us(checker(empty, text), args.calls)
        clean_best, clean_median = per_call_us(lambda text=text: rules.clean_text(text), args.calls)
        rows.append(
            (
                kind,
                "refused" if refused else "allowed",
                f"{check_best:.1f}",
                f"{check_median:.1f}",
                f"{empty_best:.2f}",
                f"{clean_best:.1f}",
                f"{clean_median:.1f}",
            )
        )
        figures[kind] = {
            "refused": refused,
            "check_us_best": check_best,
            "check_us_median": check_median,
            "empty_list_us": empty_best,
            "clean_text_us_best": clean_best,
            "clean_text_us_median": clean_median,
        }
    print(f"## Content checks per call ({ENTRIES}-entry blocklist, 64-character texts)\n")
    header = (
        "text",
        "verdict",
        "check µs (best)",
        "check µs (median)",
        "empty list µs",
        "clean_text µs (best)",
        "clean_text µs (median)",
    )
    print(table(header, rows))
    print()
    print(machine([("waited for a quiet machine", waited or "no (--no-wait)")]))
    if args.json:
        write_json(args.json, "content_policy", figures)


if __name__ == "__main__":
    sys.exit(main())
