"""Contact by exact address: outbound the To, then Cc recipients; inbound the sender."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from crm_mailer.db.models import Direction
from crm_mailer.mail.addresses import address_domain
from crm_mailer.matching.facts import ContactRef, Evidence, MatchInput, TenantFacts

if TYPE_CHECKING:
    from crm_mailer.matching.pipeline import Findings

NAME = "contact"
DESCRIPTION = "contacts by exact, case-insensitive address"


def counterpart_addresses(match: MatchInput, facts: TenantFacts, direction: Direction) -> list[str]:
    """The addresses that can be the customer side, in the order they count."""
    if direction is Direction.INBOUND:
        return [match.sender] if match.sender else []
    message = match.message
    return [a for a in (*message.to, *message.cc)
            if not facts.is_own_domain(address_domain(a))]


def check(match: MatchInput, facts: TenantFacts, findings: Findings) -> Findings:
    """Every counterpart address that is a contact of the tenant, in order."""
    assert findings.direction is not None
    addresses = counterpart_addresses(match, facts, findings.direction)
    contacts: list[ContactRef] = [facts.contacts[a] for a in addresses if a in facts.contacts]
    evidence = Evidence(NAME, ", ".join(c.email for c in contacts) or "nothing",
                        {"looked_up": addresses})
    return replace(findings, contacts=tuple(contacts), evidence=(*findings.evidence, evidence))
