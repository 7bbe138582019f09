"""Thread: a reply inherits the lead or project of the nearest filed mail it refers to.

In-Reply-To first, then References from the end (the message lists them in that order,
see crm_mailer.mail.thread). Only this tenant's messages are looked at (the facts hold no
other). A referenced mail still waiting in the queue makes the reply wait with it.
"""

from __future__ import annotations

from crm_mailer.matching.facts import (
    Findings,
    MatchInput,
    TenantFacts,
    ThreadState,
)

NAME = "thread"
DESCRIPTION = "the lead or project of the nearest filed mail this one replies to"


def check(match: MatchInput, facts: TenantFacts, findings: Findings) -> Findings:
    if findings.records:
        return findings.noted(NAME, "not needed", {"why": "the subject number decides"})
    for key in match.message.references:
        ref = facts.threads.get(key)
        if ref is None:
            continue
        if ref.state is ThreadState.WAITING:
            return findings.noted(NAME, "waits", {
                "message_id": key, "why": "the mail it replies to waits in the queue"},
                waiting=ref)
        if ref.record is None:
            return findings.noted(NAME, "nothing", {
                "message_id": key,
                "why": "the mail it replies to was filed without a lead or project"})
        record = ref.record
        return findings.noted(NAME, f"{record.kind} {record.number}", {
            "message_id": key, "why": "the mail it replies to is filed there"},
            records=(record,), source=NAME)
    why = ("no referenced mail of this tenant was filed or waits"
           if match.message.references else "the mail refers to no earlier mail")
    return findings.noted(NAME, "nothing", {"why": why})
