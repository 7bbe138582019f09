"""Contact by exact address: outbound the To, then Cc recipients (or a forward's original);
inbound the sender."""

from __future__ import annotations

from crm_mailer.mail.addresses import address_domain
from crm_mailer.matching.facts import (
    ContactRef,
    Direction,
    Findings,
    MatchInput,
    TenantFacts,
    forwarded_counterparts,
)

NAME = "contact"
DESCRIPTION = "contacts by exact, case-insensitive address"


def check(match: MatchInput, facts: TenantFacts, findings: Findings) -> Findings:
    """The counterpart addresses, and every one that is a contact of the tenant, in order."""
    assert findings.direction is not None
    detail: dict[str, object] = {}
    message = match.message
    if findings.direction is Direction.INBOUND:
        addresses = [match.sender] if match.sender else []
    elif (forwarded := forwarded_counterparts(match, facts)) is not None:
        addresses, source = forwarded
        detail["why"] = f"forwarded to crm@ alone: the original's ({source})"
    else:
        addresses = [a for a in (*message.to, *message.cc)
                     if not facts.is_own_domain(address_domain(a))]
    contacts: list[ContactRef] = [facts.contacts[a] for a in addresses if a in facts.contacts]
    return findings.noted(NAME, ", ".join(c.email for c in contacts) or "nothing",
                          {"looked_up": addresses, **detail},
                          counterparts=tuple(addresses), contacts=tuple(contacts))
