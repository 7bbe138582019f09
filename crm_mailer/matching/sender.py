"""Sender authorization: the tenant's own people (outbound) or its known customers (inbound).

The From is a claim anyone can write: it counts only when proven as the tenant's sender
policy requires (the verdict comes with the match input; see crm_mailer.mail.proof).
"""

from __future__ import annotations

from dataclasses import replace

from crm_mailer.mail.addresses import address_domain
from crm_mailer.mail.proof import registrable_domain
from crm_mailer.matching.facts import Direction, Evidence, Findings, MatchInput, TenantFacts

NAME = "sender"
DESCRIPTION = "the From domain is the tenant's own, or belongs to one of its companies or contacts"


def check(match: MatchInput, facts: TenantFacts, findings: Findings) -> Findings:
    """Set the direction, or leave it None: then nobody of this tenant may file this mail."""
    sender = match.sender
    direction: Direction | None = None
    why = "unknown sender"
    if sender is not None:
        domain = address_domain(sender)
        company = facts.company_for_domain(domain)
        if facts.is_sender_domain(domain):
            under = "" if domain in facts.sender_domains else \
                f" (under {registrable_domain(domain)})"
            direction = Direction.OUTBOUND
            why = f"{domain} is a sender domain of the tenant{under}"
        elif company is not None:
            direction = Direction.INBOUND
            under = "" if company[1] == domain else f" (under {company[1]})"
            why = f"{domain} is a domain of company {company[0].key}{under}"
        elif sender in facts.contacts:
            direction, why = Direction.INBOUND, f"{sender} is a contact"
    source = "from" if match.message.from_address else "envelope"
    unproven = False
    if direction is not None:
        verdict = match.verdicts.get(facts.sender_policy)
        if verdict is None or not verdict.passed:
            direction, unproven = None, True
            why = verdict.reason if verdict is not None else "no proof of the sender was gathered"
            if f"policy '{facts.sender_policy}'" not in why:
                why = f"not proven under policy '{facts.sender_policy}': {why}"
    evidence = Evidence(NAME, direction.value if direction else "refused",
                        {"sender": sender, "source": source, "why": why,
                         "policy": facts.sender_policy.value, "unproven": unproven})
    return replace(findings, direction=direction, evidence=(*findings.evidence, evidence))
