"""Numbers as a person types them: ASCII digits in the plain written form, nothing else."""

from __future__ import annotations

from decimal import Decimal

import pytest

from crm_mailer.numbers import decimal_number, exact_decimal, is_digits, whole_number

# int(), float(), Decimal() or str.isdigit() take each of these; a person typing a
# number means none of them.
NOT_WRITTEN_NUMBERS = ["", " ", ".", "1_000", "١٢", "１２", "²", "٢.٥", "1e3", "1E3", "0x10",
                       "inf", "Infinity", "nan", "NaN", "sNaN", "--1", "+-1", "1 2", "1,5",
                       "1.2.3"]


@pytest.mark.parametrize("text", ["0", "7", "0012", "9" * 40])
def test_digits_are_one_or_more_ascii_digits(text: str) -> None:
    assert is_digits(text)


@pytest.mark.parametrize("text", [*NOT_WRITTEN_NUMBERS, "+7", "-7", " 7", "7 ", "7\n"])
def test_anything_else_is_not_digits(text: str) -> None:
    assert not is_digits(text)


@pytest.mark.parametrize("text, number", [("0", 0), (" 42 ", 42), ("-3", -3), ("+7", 7),
                                          ("0012", 12)])
def test_a_whole_number_is_ascii_digits_with_a_sign(text: str, number: int) -> None:
    assert whole_number(text) == number


@pytest.mark.parametrize("text", [*NOT_WRITTEN_NUMBERS, "1.5", "1.", ".5"])
def test_anything_else_is_not_a_whole_number(text: str) -> None:
    with pytest.raises(ValueError) as refused:
        whole_number(text)
    assert str(refused.value) == f"{text!r} is not a whole number"


@pytest.mark.parametrize("text, number", [("0.5", "0.5"), ("2", "2"), (".25", "0.25"),
                                          ("3.", "3"), ("-1.5", "-1.5"), ("+1.10", "1.10"),
                                          (" 0.1 ", "0.1")])
def test_a_decimal_has_an_optional_sign_and_fraction_and_stays_exact(
        text: str, number: str) -> None:
    exact = exact_decimal(text)
    assert exact == Decimal(number)
    assert exact.as_tuple().exponent == Decimal(number).as_tuple().exponent  # "1.10" keeps 2
    assert decimal_number(text) == float(number)


@pytest.mark.parametrize("text", NOT_WRITTEN_NUMBERS)
def test_anything_else_is_not_a_decimal(text: str) -> None:
    for parse in (exact_decimal, decimal_number):
        with pytest.raises(ValueError) as refused:
            parse(text)
        assert str(refused.value) == f"{text!r} is not a number"
