"""Machine mail: an auto-reply, a delivery report or list traffic is no conversation.

The reading is done by crm_mailer.mail.machine (ParsedMessage.machine, with the header
that shows it); this step decides whether it counts for this tenant. List traffic counts
only when the sender is not a contact: a contact's post to a list is that person writing,
and is matched like any other mail. The step runs after the contact step for that, and
before every rule that could file the mail: the pipeline stops at a finding here.
"""

from __future__ import annotations

from dataclasses import replace

from crm_mailer.mail.machine import MachineReason
from crm_mailer.matching.facts import Evidence, Findings, MatchInput, TenantFacts

NAME = "machine"
DESCRIPTION = ("auto-replies, delivery reports and list traffic from a non-contact are "
               "kept, neither filed nor queued")


def check(match: MatchInput, facts: TenantFacts, findings: Findings) -> Findings:
    """Set `machine` when a machine wrote the mail and that counts for this tenant."""
    found = match.message.machine
    if found is None:
        evidence = Evidence(NAME, "nothing", {})
        return replace(findings, evidence=(*findings.evidence, evidence))
    detail = {"reason": found.reason.value, "header": found.header, "value": found.value}
    sender = match.sender
    if found.reason is MachineReason.MAILING_LIST and \
            any(contact.email == sender for contact in findings.contacts):
        evidence = Evidence(NAME, "nothing",
                            {**detail, "why": f"{sender} is a contact: a person's post to a list"})
        return replace(findings, evidence=(*findings.evidence, evidence))
    evidence = Evidence(NAME, found.reason.value, detail)
    return replace(findings, machine=found, evidence=(*findings.evidence, evidence))
