"""The FAQ's subject rule: a number counts only standing alone between whitespace."""

from __future__ import annotations

import pytest

from crm_mailer.matching.number import subject_numbers


@pytest.mark.parametrize("subject, numbers", [
    ("XYZ Lead 11111", (11111,)),
    ("11111", (11111,)),
    ("Lead\t11111\n", (11111,)),
    ("Lead\u00a011111", (11111,)),            # no-break space splits, as str.split() does
    ("Lead\u200311111 x", (11111,)),          # any Unicode whitespace
    ("Termin 2026 Lead 11111", (2026, 11111)),
    ("Lead 11111 und nochmal 11111", (11111,)),
    ("Lead 011111", (11111,)),                 # numbers compare as integers
    ("Lead 11111 11112", (11111, 11112)),
])
def test_whitespace_delimited_ascii_digit_tokens_are_numbers(subject: str,
                                                             numbers: tuple[int, ...]) -> None:
    assert subject_numbers(subject) == numbers


@pytest.mark.parametrize("subject", [
    "Lead 11111)",
    "Lead (11111)",
    "#11111",
    "11111.",
    "Lead 11111,",
    "Lead-11111",
    "Lead:11111",
    "Lead ١١١١١",          # Arabic-Indic digits
    "Lead １１１１１",      # full-width digits
    "Lead ¹²³",             # superscripts are str.isdigit() but not ASCII digits
    "Lead 11\u200b111",     # a zero-width space is no whitespace: one token, not digits
    "Lead +11111",
    "Lead -11111",
    "Lead 1e5",
    "",
])
def test_tokens_with_anything_but_ascii_digits_are_no_number(subject: str) -> None:
    assert subject_numbers(subject) == ()


def test_paren_after_number_is_no_number_but_a_clean_token_elsewhere_counts() -> None:
    assert subject_numbers("Lead 11111) siehe 11112") == (11112,)


def test_digit_runs_beyond_bigint_are_ignored() -> None:
    assert subject_numbers("9" * 30 + " 42") == (42,)


def test_the_largest_bigint_is_a_number_and_one_more_is_not() -> None:
    assert subject_numbers(f"{2**63 - 1} {2**63}") == (2**63 - 1,)
