"""Months and amounts: the one rule the library, the CLI and the import share, at its edges."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from crm_mailer.errors import InvalidRequest
from crm_mailer.leads.values import MAX_AMOUNT, parse_amount, parse_month


@pytest.mark.parametrize("text, month", [
    ("0001-01", dt.date(1, 1, 1)),
    ("2026-12", dt.date(2026, 12, 1)),
    (" 2027-02 ", dt.date(2027, 2, 1)),
    ("9999-12", dt.date(9999, 12, 1)),
])
def test_a_month_is_its_first_day_from_year_one_to_9999(text: str, month: dt.date) -> None:
    assert parse_month(text) == month


@pytest.mark.parametrize("text", ["0000-12", "2026-00", "2026-13", "2026-1", "26-12",
                                  "2026-12-01", "2026/12", "", "２０２６-12", "٢٠٢٦-١٢"])
def test_anything_else_is_refused_by_name(text: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_month(text)
    assert str(refused.value) == f"month {text!r} must be YYYY-MM"


@pytest.mark.parametrize("value, amount", [
    ("0", Decimal("0.00")),
    (" 1234.5 ", Decimal("1234.50")),
    (5000, Decimal("5000.00")),
    (Decimal("0.01"), Decimal("0.01")),
    (str(MAX_AMOUNT), MAX_AMOUNT),
    ("-0", Decimal("0.00")),
    (Decimal("1E+3"), Decimal("1000.00")),  # a JSON number as the import reads it
    ("+5", Decimal("5.00")),  # typed as numbers.py takes any number: sign and point optional
    (".5", Decimal("0.50")),
    ("1.", Decimal("1.00")),
])
def test_an_amount_has_two_places_up_to_the_largest(value: object, amount: Decimal) -> None:
    parsed = parse_amount(value)
    assert parsed == amount
    assert str(parsed) == str(amount)  # two places, and "-0" is 0.00, not -0.00


@pytest.mark.parametrize("value, why", [
    *((text, "is not a decimal number such as '1234.50'")
      for text in ("abc", "", ".", "1e3", "1_000", "١٢٣", "１２３", "1,50", "0x10", "sNaN",
                   "NaN", "Infinity", "+-5")),
    ("1.005", "must have at most two decimal places"),
    (Decimal("Infinity"), "must have at most two decimal places"),
    (Decimal("NaN"), "must have at most two decimal places"),
    ("-0.01", f"must be between 0 and {MAX_AMOUNT}"),
    (str(MAX_AMOUNT + Decimal("0.01")), f"must be between 0 and {MAX_AMOUNT}"),
    (12.5, "must be a decimal string such as '1234.50'"),
    (True, "must be a decimal string such as '1234.50'"),
    (None, "must be a decimal string such as '1234.50'"),
])
def test_a_wrong_amount_is_refused_with_its_reason(value: object, why: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_amount(value)
    assert str(refused.value) == f"amount {value!r} {why}"
