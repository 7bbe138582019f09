"""What a month and a net amount must look like: one rule for the library and the import."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

from crm_mailer.errors import InvalidRequest
from crm_mailer.numbers import exact_decimal

# ASCII digits only: Python's \d also takes other scripts' digits.
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
MAX_AMOUNT = Decimal("999999999999.99")


def parse_month(text: str) -> dt.date:
    """`YYYY-MM` -> the first day of that month (years 0001 to 9999)."""
    match = _MONTH.fullmatch(text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1:
        raise InvalidRequest(f"month {text!r} must be YYYY-MM")
    return dt.date(int(match.group(1)), int(match.group(2)), 1)


def parse_amount(value: object) -> Decimal:
    """A net amount: a decimal with at most two places, 0 to MAX_AMOUNT, never a float."""
    if isinstance(value, bool | float) or not isinstance(value, str | int | Decimal):
        raise InvalidRequest(f"amount {value!r} must be a decimal string such as '1234.50'")
    try:  # a string as a person types a number (numbers.py); an int or Decimal as it is
        amount = exact_decimal(value) if isinstance(value, str) else Decimal(value)
    except ValueError:
        raise InvalidRequest(f"amount {value!r} is not a decimal number such as '1234.50'") \
            from None
    exponent = amount.as_tuple().exponent
    if not amount.is_finite() or not isinstance(exponent, int) or exponent < -2:
        raise InvalidRequest(f"amount {value!r} must have at most two decimal places")
    if amount < 0 or amount > MAX_AMOUNT:
        raise InvalidRequest(f"amount {value!r} must be between 0 and {MAX_AMOUNT}")
    return amount.quantize(Decimal("0.01")) + 0  # + 0: "-0" reads 0.00, not -0.00
