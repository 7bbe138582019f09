"""Numbers as a person types them: one rule for the command line, the config, the
environment and the import.

ASCII digits in the plain written form only. Python's int(), float(), Decimal() and
str.isdigit() take more than that: other scripts' digits ("١٢", full-width ones),
superscripts ("²", isdigit() only), underscores ("1_000"), exponents ("1e3"), "inf" and
"nan". None of these is a form anyone documents or means, so each is refused here, before
any conversion.
"""

from __future__ import annotations

import re
from decimal import Decimal

_DIGITS = re.compile(r"[0-9]+")
_WHOLE = re.compile(r"[+-]?[0-9]+")
# A point with digits on at least one side: "0.5", ".5" and "5." as a person writes them.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def is_digits(text: str) -> bool:
    """True if `text` is one or more ASCII digits and nothing else (no sign, no space)."""
    return _DIGITS.fullmatch(text) is not None


def whole_number(text: str) -> int:
    """A whole number with an optional sign; ValueError if `text` is none."""
    if not _WHOLE.fullmatch(stripped := text.strip()):
        raise ValueError(f"{text!r} is not a whole number")
    return int(stripped)


def exact_decimal(text: str) -> Decimal:
    """A number with an optional sign and fraction, kept exact; ValueError if `text` is
    none."""
    if not _DECIMAL.fullmatch(stripped := text.strip()):
        raise ValueError(f"{text!r} is not a number")
    return Decimal(stripped)


def decimal_number(text: str) -> float:
    """What exact_decimal() takes, as a float (seconds, days)."""
    return float(exact_decimal(text))
