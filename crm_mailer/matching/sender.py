"""Sender authorization: the tenant's own people (outbound) or its known customers (inbound).

The From is a claim anyone can write: it counts only when proven as the tenant's sender
policy requires (the verdict comes with the match input; see crm_mailer.mail.proof).
"""

from __future__ import annotations

from dataclasses import replace

from crm_mailer.mail.addresses import address_domain
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
        if domain in facts.sender_domains:
            direction, why = Direction.OUTBOUND, f"{domain} is a sender domain of the tenant"
        elif domain in facts.company_domains:
            direction = Direction.INBOUND
            why = f"{domain} is a domain of company {facts.company_domains[domain].key}"
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
