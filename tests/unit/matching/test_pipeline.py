"""The matcher steps and the decision, on hand-made facts (no database)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import pytest

from crm_mailer.mail.parse import ParsedMessage
from crm_mailer.mail.proof import SenderPolicy, Verdict
from crm_mailer.matching import pipeline
from crm_mailer.matching.decide import Filed, Queued, Reason
from crm_mailer.matching.facts import (
    CompanyRef,
    ContactRef,
    Direction,
    MatchInput,
    RecordKind,
    RecordRef,
    TenantFacts,
)
from crm_mailer.matching.number import subject_numbers
from crm_mailer.matching.tenant import recipient_host

ACME, MUELLER = CompanyRef(1, "acme"), CompanyRef(2, "mueller")
BOB = ContactRef(10, "bob@acme.com", ACME.id)
CAROL = ContactRef(11, "carol@acme.com", ACME.id)
JUERGEN = ContactRef(12, "juergen@mueller.example", MUELLER.id)
FREE = ContactRef(13, "free@mail.example", None)
LEAD_ACME = RecordRef(RecordKind.LEAD, 100, 11111, ACME.id)
LEAD_MUELLER = RecordRef(RecordKind.LEAD, 101, 11112, MUELLER.id)
LEAD_NO_COMPANY = RecordRef(RecordKind.LEAD, 102, 11114, None)
PROJECT_ACME = RecordRef(RecordKind.PROJECT, 200, 20001, ACME.id)
PROJECT_SAME_NUMBER = RecordRef(RecordKind.PROJECT, 201, 11111, ACME.id)


def facts(records: Iterable[RecordRef] = (LEAD_ACME, LEAD_MUELLER, LEAD_NO_COMPANY,
                                          PROJECT_ACME)) -> TenantFacts:
    records = list(records)
    return TenantFacts(
        tenant_id=1, slug="xyz",
        hosts=frozenset({"xyz.hq.example"}), sender_domains=frozenset({"xyz.de"}),
        contacts={c.email: c for c in (BOB, CAROL, JUERGEN, FREE)},
        company_domains={"acme.com": ACME, "mueller.example": MUELLER},
        companies={ACME.id: ACME, MUELLER.id: MUELLER},
        leads={r.number: r for r in records if r.kind is RecordKind.LEAD},
        projects={r.number: r for r in records if r.kind is RecordKind.PROJECT},
    )


PROVEN = {policy: Verdict(True, "proven") for policy in SenderPolicy}


def run(subject: str, *, sender: str = "alice@xyz.de", to: tuple[str, ...] = ("bob@acme.com",),
        cc: tuple[str, ...] = (), tenant: TenantFacts | None = None,
        verdicts: Mapping[SenderPolicy, Verdict] = PROVEN) -> pipeline.MatchResult:
    message = ParsedMessage(message_id="m@x", message_id_derived=False, subject=subject,
                            from_address=sender, to=to, cc=cc, sent_at=None, body="")
    return pipeline.run(MatchInput(message, None, subject_numbers(subject), verdicts),
                        tenant or facts())


def reasons(result: pipeline.MatchResult) -> tuple[Reason, ...]:
    assert isinstance(result.decision, Queued), result.decision
    return result.decision.reasons


def test_outbound_certain_match_is_filed_with_contact_company_and_lead() -> None:
    result = run("XYZ Lead 11111")
    assert result.decision == Filed(LEAD_ACME, ACME, BOB, (BOB,))
    assert result.findings.direction is Direction.OUTBOUND
    assert [e.step for e in result.evidence] == ["sender", "contact", "machine", "company",
                                                 "number", "thread", "name", "single_lead",
                                                 "decide"]


def test_inbound_reply_matches_the_sender_as_contact() -> None:
    result = run("AW: XYZ Lead 11111", sender="bob@acme.com", to=("alice@xyz.de",))
    assert result.findings.direction is Direction.INBOUND
    assert result.decision == Filed(LEAD_ACME, ACME, BOB, (BOB,))


def test_sender_of_unknown_domain_is_refused() -> None:
    result = run("Lead 11111", sender="mallory@evil.example")
    assert isinstance(result.decision, pipeline.Refused)


def test_contact_without_company_domain_is_an_authorized_inbound_sender() -> None:
    result = run("Lead 11111", sender="free@mail.example", to=("alice@xyz.de",))
    assert result.findings.direction is Direction.INBOUND
    assert reasons(result) == (Reason.COMPANY_MISMATCH,)


def test_own_domains_and_crm_address_are_never_contacts() -> None:
    result = run("Lead 11111", to=("crm@xyz.hq.example", "colleague@xyz.de", "bob@acme.com"))
    assert isinstance(result.decision, Filed)
    assert result.decision.participants == (BOB,)


def test_entry_contact_is_first_matched_whose_company_fits_the_lead() -> None:
    result = run("Lead 11112", to=("bob@acme.com", "juergen@mueller.example"))
    assert result.decision == Filed(LEAD_MUELLER, MUELLER, JUERGEN, (BOB, JUERGEN))


def test_cc_contacts_count_after_to() -> None:
    result = run("Lead 11111", to=("unknown@acme.com",), cc=("carol@acme.com",))
    assert result.decision == Filed(LEAD_ACME, ACME, CAROL, (CAROL,))


@pytest.mark.parametrize("subject, to, expected", [
    ("Kein Lead", ("bob@acme.com",), (Reason.NO_NUMBER,)),
    ("Lead 11111)", ("bob@acme.com",), (Reason.NO_NUMBER,)),
    ("Termin 2026 Lead 99999", ("bob@acme.com",), (Reason.UNKNOWN_NUMBER,)),
    ("Lead 11111 und 20001", ("bob@acme.com",), (Reason.SEVERAL_NUMBERS,)),
    ("Lead 11111", ("nobody@acme.com",), (Reason.NO_CONTACT,)),
    ("Lead 11112", ("bob@acme.com",), (Reason.COMPANY_MISMATCH,)),
    ("Lead 11114", ("bob@acme.com",), (Reason.COMPANY_MISMATCH,)),  # the lead has no company
    ("Hallo", ("nobody@else.example",), (Reason.NO_NUMBER, Reason.NO_CONTACT)),
])
def test_uncertain_mail_is_queued_with_reason_codes(subject: str, to: tuple[str, ...],
                                                    expected: tuple[Reason, ...]) -> None:
    assert reasons(run(subject, to=to)) == expected


def test_a_number_that_is_lead_and_project_is_two_candidates() -> None:
    result = run("Lead 11111", tenant=facts([LEAD_ACME, PROJECT_SAME_NUMBER]))
    assert reasons(result) == (Reason.SEVERAL_NUMBERS,)
    assert isinstance(result.decision, Queued)
    assert result.decision.candidates == {"leads": [11111], "projects": [11111],
                                          "contacts": ["bob@acme.com"], "companies": ["acme"]}


def test_queued_candidates_name_companies_of_contacts_and_records() -> None:
    result = run("Lead 11112", to=("bob@acme.com",))
    assert isinstance(result.decision, Queued)
    assert result.decision.candidates == {"leads": [11112], "projects": [],
                                          "contacts": ["bob@acme.com"],
                                          "companies": ["acme", "mueller"]}


def test_outbound_company_falls_back_to_a_recipient_domain() -> None:
    result = run("Hallo", to=("new.person@mueller.example",))
    assert result.findings.company == MUELLER


@pytest.mark.parametrize("address, host", [
    ("crm@xyz.hq.example", "xyz.hq.example"),
    ("CRM@XYZ.HQ.Example", "xyz.hq.example"),
    ("crm@büro-abc.example", "xn--bro-abc-n2a.example"),
    ("crm@xn--bro-abc-n2a.example", "xn--bro-abc-n2a.example"),
    ("crm@xyz.hq.example.", "xyz.hq.example"),
    ("sales@xyz.hq.example", None),
    ("crm@[192.0.2.1]", None),
    ("crm", None),
    ("@xyz.hq.example", None),
    ('"crm"@xyz.hq.example', None),
    ("crm@", None),
    ("@relay.example:crm@xyz.hq.example", None),  # a source route
])
def test_recipient_host_accepts_only_the_crm_local_part(address: str, host: str | None) -> None:
    assert recipient_host(address, "crm") == host


def test_a_known_sender_that_is_not_proven_is_refused_with_the_policy_reason() -> None:
    unproven = {policy: Verdict(policy is SenderPolicy.HEADER,
                                f"From xyz.de not proven under policy '{policy}'")
                for policy in SenderPolicy}
    result = run("XYZ Lead 11111", verdicts=unproven)
    assert result.decision == pipeline.Refused("alice@xyz.de",
                                               "From xyz.de not proven under policy 'aligned'")
    assert result.evidence[0].detail["policy"] == "aligned"


def test_the_header_policy_files_an_unproven_known_sender() -> None:
    unproven = {policy: Verdict(policy is SenderPolicy.HEADER, "no proof")
                for policy in SenderPolicy}
    tenant = dataclasses.replace(facts(), sender_policy=SenderPolicy.HEADER)
    assert isinstance(run("XYZ Lead 11111", verdicts=unproven, tenant=tenant).decision, Filed)


def test_without_any_verdict_nothing_is_proven() -> None:
    result = run("XYZ Lead 11111", verdicts={})
    assert isinstance(result.decision, pipeline.Refused)
    assert "no proof of the sender" in result.decision.why
