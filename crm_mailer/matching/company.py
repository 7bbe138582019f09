"""Company: inbound by the sender's domain; outbound by the contact's company, else a domain."""

from __future__ import annotations

from dataclasses import replace

from crm_mailer.mail.addresses import address_domain
from crm_mailer.matching.facts import (
    CompanyRef,
    Direction,
    Evidence,
    Findings,
    MatchInput,
    TenantFacts,
)

NAME = "company"
DESCRIPTION = "company by the counterpart's domain or contact"


def _find(facts: TenantFacts, findings: Findings) -> tuple[CompanyRef | None, str]:
    assert findings.direction is not None
    by_contact = next((facts.companies[c.company_id] for c in findings.contacts
                       if c.company_id is not None and c.company_id in facts.companies), None)
    by_domain = next((found for found in map(facts.company_for_domain,
                                             map(address_domain, findings.counterparts))
                      if found), None)
    if findings.direction is Direction.INBOUND and by_domain is not None:
        return by_domain[0], f"sender domain {by_domain[1]}"
    if by_contact is not None:
        return by_contact, "company of the matched contact"
    if by_domain is not None:
        return by_domain[0], f"recipient domain {by_domain[1]}"
    return None, "no counterpart domain or contact belongs to a company"


def check(match: MatchInput, facts: TenantFacts, findings: Findings) -> Findings:
    company, why = _find(facts, findings)
    evidence = Evidence(NAME, company.key if company else "nothing", {"why": why})
    return replace(findings, company=company, evidence=(*findings.evidence, evidence))
