"""Lead name: the whole name of an open lead or active project in the subject.

The FAQ: "damit der richtige Lead ausgewählt wird, sollte dessen Name im Betreff stehen".
Reply and forward prefixes come off first; names are compared as whole, casefolded words
(crm_mailer.matching.subject). The names of the companies the mail belongs to come first;
another company's lead named in the subject is only a candidate.
"""

from __future__ import annotations

from crm_mailer.matching.facts import Findings, MatchInput, RecordRef, TenantFacts
from crm_mailer.matching.subject import contains_words, strip_prefixes, words

NAME = "name"
DESCRIPTION = "an open lead or active project whose whole name is in the subject"


def company_ids(findings: Findings) -> list[int]:
    """The companies the mail belongs to: the company found, then the contacts' ones."""
    found = [findings.company.id] if findings.company is not None else []
    for contact in findings.contacts:
        if contact.company_id is not None and contact.company_id not in found:
            found.append(contact.company_id)
    return found


def check(match: MatchInput, facts: TenantFacts, findings: Findings) -> Findings:
    if findings.records or findings.waiting is not None:
        return findings.noted(NAME, "not needed", {"why": "an earlier step decided"})
    subject = words(strip_prefixes(match.message.subject))
    own = company_ids(findings)
    named = [r for company in own for r in facts.company_records.get(company, ())
             if contains_words(subject, r.name_words)]
    other = [r for r in facts.named
             if r.company_id not in own and contains_words(subject, r.name_words)]
    records: tuple[RecordRef, ...] = tuple(dict.fromkeys(named or other))
    if not records:
        return findings.noted(NAME, "nothing", {
            "why": "no open lead's or active project's whole name is in the subject"})
    return findings.noted(
        NAME, ", ".join(f"{r.kind} {r.number}" for r in records),
        {"names": [r.name for r in records],
         "whose": "the mail's company" if named else "another company"},
        records=records, source=NAME)
