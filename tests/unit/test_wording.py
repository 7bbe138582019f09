"""Counts in words: singular for one, the plural's spelling, a verb that stays."""

from __future__ import annotations

import pytest

from crm_mailer.wording import counted, plural


@pytest.mark.parametrize(("noun", "expected"), [
    ("lead", "leads"), ("company", "companies"), ("lead status", "lead statuses"),
    ("contact-history entry", "contact-history entries"), ("day", "days"),
    ("pending mail", "pending mail"), ("box", "boxes"), ("match", "matches"),
])
def test_plural(noun: str, expected: str) -> None:
    assert plural(noun) == expected


def test_one_is_singular_and_every_other_count_plural() -> None:
    assert [counted(n, "lead") for n in (0, 1, 2)] == ["0 leads", "1 lead", "2 leads"]


def test_what_happened_keeps_its_verb() -> None:
    assert counted(1, "company created") == "1 company created"
    assert counted(3, "lead status updated") == "3 lead statuses updated"
    assert counted(2, "conflict") == "2 conflicts"
    assert counted(2, "overwritten") == "2 overwritten"
