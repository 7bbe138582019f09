"""Contact by exact address: outbound the To, then Cc recipients; inbound the sender."""

from __future__ import annotations

from dataclasses import replace

from crm_mailer.matching.facts import (
    ContactRef,
    Direction,
    Evidence,
    Findings,
    MatchInput,
    TenantFacts,
    counterpart_addresses,
    forwarded_counterparts,
)

NAME = "contact"
DESCRIPTION = "contacts by exact, case-insensitive address"


def check(match: MatchInput, facts: TenantFacts, findings: Findings) -> Findings:
    """Every counterpart address that is a contact of the tenant, in order."""
    assert findings.direction is not None
    addresses = counterpart_addresses(match, facts, findings.direction)
    contacts: list[ContactRef] = [facts.contacts[a] for a in addresses if a in facts.contacts]
    detail: dict[str, object] = {"looked_up": addresses}
    if findings.direction is Direction.OUTBOUND and \
            forwarded_counterparts(match, facts) is not None:
        source = match.message.forwarded.source if match.message.forwarded else "?"
        detail["why"] = f"forwarded to crm@ alone: the original's ({source})"
    evidence = Evidence(NAME, ", ".join(c.email for c in contacts) or "nothing", detail)
    return replace(findings, contacts=tuple(contacts), evidence=(*findings.evidence, evidence))
