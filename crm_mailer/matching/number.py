"""Lead or project by subject number: whitespace-delimited tokens of ASCII digits only.

The FAQ's rule: a number counts only when nothing but whitespace surrounds it, so
`Lead 11111)`, `#11111` and `11111.` carry no number, nor do Arabic-Indic or
full-width digits. Tokens are split as `str.split()` does (any Unicode whitespace).
"""

from __future__ import annotations

import re
from dataclasses import replace

from crm_mailer.matching.facts import Evidence, Findings, MatchInput, RecordRef, TenantFacts

NAME = "number"
DESCRIPTION = "lead or project by an all-digit token in the subject"

# At most 19 digits: a BIGINT holds no more, and int() refuses 4,300 and more by default.
_ASCII_DIGITS = re.compile(r"[0-9]{1,19}", re.ASCII)
MAX_NUMBER = 2**63 - 1  # a BIGINT; longer digit runs cannot be a lead or project number


def subject_numbers(subject: str) -> tuple[int, ...]:
    """Distinct all-ASCII-digit tokens of the subject, as integers, in order of appearance."""
    found: dict[int, None] = {}
    for token in subject.split():
        if _ASCII_DIGITS.fullmatch(token):
            value = int(token)
            if value <= MAX_NUMBER:
                found.setdefault(value, None)
    return tuple(found)


def check(match: MatchInput, facts: TenantFacts, findings: Findings) -> Findings:
    """Every lead and every project whose number is a subject token; other numbers are ignored."""
    candidates: list[RecordRef] = []
    for number in match.numbers:
        for table in (facts.leads, facts.projects):
            if (record := table.get(number)) is not None:
                candidates.append(record)
    evidence = Evidence(
        NAME,
        ", ".join(f"{r.kind} {r.number}" for r in candidates) or "nothing",
        {"tokens": list(match.numbers)},
    )
    return replace(findings, records=tuple(candidates), source="number" if candidates else "",
                   evidence=(*findings.evidence, evidence))
