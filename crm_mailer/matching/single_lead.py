"""Single open lead: when nothing above matched, the company's one open lead is the
suggestion a person sees first. Never a certain match."""

from __future__ import annotations

from crm_mailer.matching.facts import Findings, MatchInput, RecordKind, TenantFacts

NAME = "single_lead"
DESCRIPTION = "the company's only open lead, suggested (never certain)"


def check(match: MatchInput, facts: TenantFacts, findings: Findings) -> Findings:
    if findings.records or findings.waiting is not None or findings.company is None:
        return findings.noted(NAME, "not needed",
                              {"why": "an earlier step decided, or no company is known"})
    leads = [r for r in facts.company_records.get(findings.company.id, ())
             if r.kind is RecordKind.LEAD]
    if len(leads) != 1:
        return findings.noted(NAME, "nothing", {"open_leads": min(len(leads), 2)})
    lead = leads[0]
    return findings.noted(NAME, f"lead {lead.number}", {
        "why": f"the only open lead of company {findings.company.key}"}, suggested=(lead,))
