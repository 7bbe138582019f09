"""argparse types: every value a command line gives is checked here, before any work.

A value that cannot be right is a usage error (exit 2, with the flag it belongs to in
argparse's message), on every backend alike; what only the database can tell (whether
lead 123 exists) stays the command's answer (exit 1).
"""

from __future__ import annotations

import argparse
from decimal import Decimal

from crm_mailer.errors import InvalidRequest
from crm_mailer.leads.values import parse_amount, parse_month
from crm_mailer.numbers import decimal_number, whole_number
from crm_mailer.settings import INTEGER_RANGES, parse_workers

MAX_COUNT = 2**63 - 1  # what a database's LIMIT and OFFSET take


def _integer(text: str) -> int:
    try:
        return whole_number(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def port(text: str) -> int:
    """A TCP port, 0 for any free one: the range the config's listen_port takes."""
    low, high = INTEGER_RANGES["listen_port"]
    value = _integer(text)
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{value} is not a port: it must be from {low} to "
                                         f"{high}")
    return value


def count(text: str) -> int:
    """How many (--limit) or how many to skip (--offset): 0 or more."""
    value = _integer(text)
    if not 0 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{value} must be from 0 to {MAX_COUNT}")
    return value


def identifier(text: str) -> int:
    """An ID or a lead or project number: 1 or more. One no record can have (past the
    column's range) is still a number: the command answers that there is no such record."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return value


def days(text: str) -> float:
    """A number of days, 0 or more; fractions allowed (0.5 is twelve hours)."""
    try:
        value = decimal_number(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not 0 <= value < 1e6:
        raise argparse.ArgumentTypeError(f"{text.strip()} days must be from 0 to 999999")
    return value


def month(text: str) -> str:
    """YYYY-MM, a real month."""
    try:
        parse_month(text)
    except InvalidRequest as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def amount(text: str) -> Decimal:
    """A net amount as the lead library takes it: a decimal, at most two places."""
    try:
        return parse_amount(text)
    except InvalidRequest as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def workers(text: str) -> int:
    try:
        return parse_workers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
