"""Decision: certain -> a contact-history entry; machine mail -> kept, nothing more;
anything else -> the confirmation queue.

Certain means exactly one lead or project matched, a contact matched, and that
record's company is set and is the contact's company.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from crm_mailer.mail.machine import MachineReason
from crm_mailer.matching.facts import (
    CompanyRef,
    ContactRef,
    Evidence,
    Findings,
    MatchInput,
    RecordRef,
    TenantFacts,
)

NAME = "decide"
DESCRIPTION = "file when certain, else queue with reasons and candidates"


class Reason(StrEnum):
    """Why a mail waits for a person; the values are the stable codes the main app reads."""

    NO_NUMBER = "no_number"
    UNKNOWN_NUMBER = "unknown_number"
    SEVERAL_NUMBERS = "several_numbers"
    NO_CONTACT = "no_contact"
    COMPANY_MISMATCH = "company_mismatch"
    THREAD_WAITING = "thread_waiting"
    THREAD_CONFLICT = "thread_conflict"
    SEVERAL_NAMES = "several_names"
    OTHER_COMPANYS_NAME = "other_companys_name"
    REVIEW = "review"
    UNPROCESSABLE = "unprocessable"


REASON_TEXT = {
    Reason.NO_NUMBER: "the subject has no number standing alone between spaces",
    Reason.UNKNOWN_NUMBER: "no number in the subject is a lead or project of this tenant",
    Reason.SEVERAL_NUMBERS: "the subject points to more than one lead or project",
    Reason.NO_CONTACT: "no recipient (outbound) or sender (inbound) is a known contact",
    Reason.COMPANY_MISMATCH: "the lead's or project's company is not the contact's company",
    Reason.THREAD_WAITING: "the mail it replies to waits in the queue itself",
    Reason.THREAD_CONFLICT: "it replies to mail filed on a lead or project of another company "
                            "than the contact's",
    Reason.SEVERAL_NAMES: "the subject names more than one open lead or active project",
    Reason.OTHER_COMPANYS_NAME: "the subject names only another company's lead or project",
    Reason.REVIEW: "filed already; the tenant checks every new mail (review = all)",
    Reason.UNPROCESSABLE: "crm-mailer could not read or match this mail (see its error); "
                          "kept as received, `crm-mailer reprocess` tries again",
}


@dataclass(frozen=True, slots=True)
class Filed:
    """A certain match: file into the contact history."""

    record: RecordRef
    company: CompanyRef
    contact: ContactRef
    participants: tuple[ContactRef, ...]


@dataclass(frozen=True, slots=True)
class Queued:
    """An uncertain match: wait for a person, with reason codes and candidates."""

    reasons: tuple[Reason, ...]
    candidates: dict[str, list[int | str]]


@dataclass(frozen=True, slots=True)
class Ignored:
    """Machine mail (an auto-reply, a report, list traffic): kept as received with the
    reason and the header that shows it, neither filed nor queued."""

    reason: MachineReason
    header: str
    value: str


Decision = Filed | Queued | Ignored


# Why a single record that is not the contact's company's is uncertain, by who found it.
_MISMATCH = {"thread": Reason.THREAD_CONFLICT, "name": Reason.OTHER_COMPANYS_NAME}


def decide(match: MatchInput, facts: TenantFacts, findings: Findings) -> tuple[Decision, Evidence]:
    if (machine := findings.machine) is not None:
        return (Ignored(machine.reason, machine.header, machine.value),
                Evidence(NAME, "ignored", {"reasons": [machine.reason.value]}))
    reasons: list[Reason] = []
    records = findings.records
    if findings.waiting is not None:
        reasons.append(Reason.THREAD_WAITING)
    elif not records:
        reasons.append(Reason.UNKNOWN_NUMBER if match.numbers else Reason.NO_NUMBER)
    elif len(records) > 1:
        reasons.append(Reason.SEVERAL_NAMES if findings.source == "name"
                       else Reason.SEVERAL_NUMBERS)
    if not findings.contacts:
        reasons.append(Reason.NO_CONTACT)
    fitting: ContactRef | None = None
    if len(records) == 1 and findings.contacts:
        company_id = records[0].company_id
        fitting = next((c for c in findings.contacts
                        if company_id is not None and c.company_id == company_id), None)
        if fitting is None:
            reasons.append(_MISMATCH.get(findings.source, Reason.COMPANY_MISMATCH))
    company = facts.companies.get(fitting.company_id or 0) if fitting else None
    if not reasons and fitting is not None and company is not None:
        record = records[0]
        decision: Decision = Filed(record, company, fitting, findings.contacts)
        found = f"filed on {record.kind} {record.number}"
        return decision, Evidence(NAME, found, {"contact": fitting.email,
                                                "by": findings.source})
    queued = Queued(tuple(reasons), candidates(facts, findings))
    return queued, Evidence(NAME, "queued", {"reasons": [r.value for r in reasons]})


def candidates(facts: TenantFacts, findings: Findings) -> dict[str, list[int | str]]:
    """Everything a person may choose from: the leads, projects, contacts and companies
    seen; the suggestion (the company's single open lead) and what the mail waits with."""
    records = (*findings.records, *findings.suggested)
    waiting = findings.waiting.candidates if findings.waiting is not None else {}
    company_ids: list[int] = []
    if findings.company is not None:
        company_ids.append(findings.company.id)
    for company_id in (*(c.company_id for c in findings.contacts),
                       *(r.company_id for r in records)):
        if company_id is not None and company_id not in company_ids:
            company_ids.append(company_id)

    def merged(kind: str, own: list[int | str]) -> list[int | str]:
        return list(dict.fromkeys([*own, *waiting.get(kind, [])]))

    return {
        "leads": merged("leads", [r.number for r in records if r.kind == "lead"]),
        "projects": merged("projects", [r.number for r in records if r.kind == "project"]),
        "contacts": merged("contacts", [c.email for c in findings.contacts]),
        "companies": merged("companies", [facts.companies[i].key for i in company_ids
                                          if i in facts.companies]),
    }
