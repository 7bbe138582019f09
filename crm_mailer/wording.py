"""Counts in words for people: "1 lead", "2 leads". Every count a person reads goes through
`counted`, so that no output says "1 leads" or "lead(s)"."""

from __future__ import annotations

# Nouns that do not change ("3 mail"), and past participles used as counted words.
_UNCHANGED = frozenset({"mail", "overwritten"})
_VERBS = ("created", "updated", "changed", "deleted", "overwritten")


def plural(noun: str) -> str:
    """The plural of `noun`; in a phrase ("lead status") its last word takes it."""
    head, _, last = noun.rpartition(" ")
    if last in _UNCHANGED:
        word = last
    elif last.endswith("y") and last[-2:-1] not in tuple("aeiou"):
        word = last[:-1] + "ies"
    elif last.endswith(("s", "x", "ch", "sh")):
        word = last + "es"
    else:
        word = last + "s"
    return f"{head} {word}" if head else word


def counted(n: float, noun: str) -> str:
    """`n` and the noun, in the plural unless n is 1. A noun followed by what happened to
    it ("company created") keeps the verb as it is: "2 companies created"."""
    subject, _, verb = noun.rpartition(" ")
    if subject and verb in _VERBS:
        return f"{counted(n, subject)} {verb}"
    number = f"{n:g}" if isinstance(n, float) else str(n)  # 30.0 days reads "30 days"
    return f"{number} {noun if n == 1 else plural(noun)}"
