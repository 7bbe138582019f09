"""The subject as people wrote it: reply and forward prefixes off, then whole words.

Prefixes are the ones our users' clients write, in any order and repetition: `Re:`,
`AW:`, `WG:`, `Fwd:`, `FW:`, `SV:`, `VS:`, `Antw:`, counted forms (`RE[2]:`, `Re^3:`,
`Re(2):`), and tags in brackets (`[EXT]`, `[Extern]`). Words are compared casefolded
(Unicode-aware: `STRASSE` is `straße`), and a hyphen belongs to the word it joins
(`Website-Relaunch` is one word), so a name never matches inside a longer word.
"""

from __future__ import annotations

import re

# One prefix: a reply/forward marker with an optional count, then a colon (ASCII or
# full-width); or a bracketed tag of at most 30 characters. Possessive and anchored:
# linear on any input.
_PREFIX = re.compile(
    r"\s*+(?:(?:re|aw|wg|fwd?|sv|vs|antw|tr|wtr|rif|enc)"
    r"(?:\[\d{1,3}\]|\^\d{1,3}|\(\d{1,3}\))?+\s*+[:\uFF1A]|\[[^\[\]\r\n]{1,30}+\])",
    re.IGNORECASE)
_WORD = re.compile(r"\w(?:[\w-]*\w)?")
# Unicode hyphens are hyphens; a soft hyphen is invisible and joins nothing.
_HYPHENS = str.maketrans({"\u2010": "-", "\u2011": "-", "\u00ad": None})
MAX_SUBJECT_WORDS = 60  # a subject longer than this is not a name carrier past it


def strip_prefixes(subject: str) -> str:
    """The subject without leading reply/forward prefixes and tags."""
    position = 0
    while match := _PREFIX.match(subject, position):
        position = match.end()
    return subject[position:].strip()


def words(text: str, limit: int = MAX_SUBJECT_WORDS) -> tuple[str, ...]:
    """The casefolded words of `text`, at most `limit` of them."""
    found: list[str] = []
    for match in _WORD.finditer(text.translate(_HYPHENS).casefold()):
        found.append(match.group())
        if len(found) == limit:
            break
    return tuple(found)


def name_key(name: str) -> str:
    """How a lead's or project's name is compared and stored for lookup."""
    return " ".join(words(name, limit=1_000))


def contains_words(haystack: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    """True if `needle` appears in `haystack` as a run of whole words."""
    if not needle or len(needle) > len(haystack):
        return False
    size = len(needle)
    return any(haystack[i:i + size] == needle for i in range(len(haystack) - size + 1))


def word_runs(subject_words: tuple[str, ...], longest: int) -> list[str]:
    """Every run of 1..`longest` consecutive words, joined like name_key: the names a
    subject can carry, to look up by key."""
    return [" ".join(subject_words[i:i + size])
            for size in range(1, longest + 1)
            for i in range(len(subject_words) - size + 1)]
