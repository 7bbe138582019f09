"""The declared order of matching steps, and the function that runs them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from crm_mailer.matching import (
    company,
    contact,
    decide,
    machine,
    name,
    number,
    sender,
    single_lead,
    thread,
)
from crm_mailer.matching.facts import Evidence, Findings, MatchInput, TenantFacts

__all__ = ["STEPS", "Findings", "MatchResult", "Refused", "Step", "run"]

Step = Callable[[MatchInput, TenantFacts, Findings], Findings]

# Tenant is resolved before this (by the envelope recipient's host); decide comes after.
# Contact precedes company: outbound, the company is the matched contact's.
# Machine follows contact (a list post from a contact is a person's) and ends the run when
# it finds machine mail: no later rule may file it.
STEPS: tuple[Step, ...] = (
    sender.check,
    contact.check,
    machine.check,
    company.check,
    number.check,       # a number that points to one lead or project wins over all below
    thread.check,       # else the nearest filed (or waiting) mail it replies to
    name.check,         # else an open lead's or active project's whole name in the subject
    single_lead.check,  # else the company's single open lead, as a suggestion only
)


@dataclass(frozen=True, slots=True)
class Refused:
    """The sender is not authorized for this tenant, or not proven: nothing is stored."""

    sender: str | None
    why: str = ""


@dataclass(frozen=True, slots=True)
class MatchResult:
    findings: Findings
    decision: decide.Decision | Refused

    @property
    def evidence(self) -> tuple[Evidence, ...]:
        return self.findings.evidence


def run(match: MatchInput, facts: TenantFacts) -> MatchResult:
    """Run the steps in order; stop at an unauthorized sender, or at machine mail."""
    findings = Findings()
    for step in STEPS:
        findings = step(match, facts, findings)
        if findings.direction is None:  # only the sender step refuses, and it says why
            return MatchResult(findings, Refused(match.sender,
                                                 str(findings.evidence[-1].detail["why"])))
        if findings.machine is not None:
            break
    decision, evidence = decide.decide(match, facts, findings)
    return MatchResult(replace(findings, evidence=(*findings.evidence, evidence)), decision)
