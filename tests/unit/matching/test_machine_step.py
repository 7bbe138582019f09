"""The machine step and the Ignored decision, on hand-made facts (no database)."""

from __future__ import annotations

import pytest

from crm_mailer.mail.machine import MachineMail, MachineReason
from crm_mailer.mail.parse import ParsedMessage
from crm_mailer.matching import contact, machine, pipeline
from crm_mailer.matching.decide import Filed, Ignored, Queued
from crm_mailer.matching.facts import Direction, Findings, MatchInput
from crm_mailer.matching.number import subject_numbers
from tests.unit.matching.test_pipeline import ACME, BOB, LEAD_ACME, PROVEN, facts

AUTO = MachineMail(MachineReason.AUTO_REPLY, "Auto-Submitted", "auto-generated")
REPORT = MachineMail(MachineReason.DELIVERY_REPORT, "MAIL FROM", "<>")
LIST = MachineMail(MachineReason.MAILING_LIST, "List-Id", "Partner-News <news.lists.acme.com>")


def match(subject: str = "Automatische Antwort: XYZ Lead 11111", *,
          sender: str = "bob@acme.com", to: tuple[str, ...] = ("alice@xyz.de",),
          found: MachineMail | None = AUTO) -> MatchInput:
    message = ParsedMessage(message_id="m@x", message_id_derived=False, subject=subject,
                            from_address=sender, to=to, cc=(), sent_at=None, body="",
                            machine=found)
    return MatchInput(message, None, subject_numbers(subject), PROVEN)


def test_an_auto_reply_carrying_the_lead_number_is_ignored_not_filed() -> None:
    result = pipeline.run(match(), facts())
    assert result.decision == Ignored(MachineReason.AUTO_REPLY, "Auto-Submitted",
                                      "auto-generated")
    assert result.findings.direction is Direction.INBOUND
    assert result.findings.contacts == (BOB,)


def test_the_pipeline_stops_at_machine_mail_so_no_later_rule_can_file_it() -> None:
    result = pipeline.run(match(), facts())
    assert [e.step for e in result.evidence] == ["sender", "contact", "machine", "decide"]
    assert result.findings.records == ()
    machine_evidence, decision = result.evidence[-2:]
    assert machine_evidence.as_dict() == {"step": "machine", "found": "auto_reply",
                                          "reason": "auto_reply", "header": "Auto-Submitted",
                                          "value": "auto-generated"}
    assert decision.as_dict() == {"step": "decide", "found": "ignored",
                                  "reasons": ["auto_reply"]}


@pytest.mark.parametrize("found", [AUTO, REPORT])
def test_auto_replies_and_reports_are_ignored_whoever_sent_them(found: MachineMail) -> None:
    for sender in ("bob@acme.com", "postmaster@acme.com", "alice@xyz.de"):
        decision = pipeline.run(match(sender=sender, to=("bob@acme.com",), found=found),
                                facts()).decision
        assert decision == Ignored(found.reason, found.header, found.value), sender


def test_a_contact_s_post_to_a_list_is_matched_like_any_mail() -> None:
    result = pipeline.run(match("[Partner-News] XYZ Lead 11111", found=LIST), facts())
    assert result.decision == Filed(LEAD_ACME, ACME, BOB, (BOB,))
    [step] = [e for e in result.evidence if e.step == "machine"]
    assert step.found == "nothing"
    assert step.detail["reason"] == "mailing_list"
    assert "bob@acme.com is a contact" in step.detail["why"]


def test_a_list_post_from_a_non_contact_of_a_company_domain_is_ignored() -> None:
    result = pipeline.run(match("[Partner-News] XYZ Lead 11111", sender="news@acme.com",
                                found=LIST), facts())
    assert result.findings.direction is Direction.INBOUND and result.findings.contacts == ()
    assert result.decision == Ignored(MachineReason.MAILING_LIST, "List-Id",
                                      "Partner-News <news.lists.acme.com>")


def test_a_list_post_by_the_tenant_s_own_people_is_ignored() -> None:
    """Outbound, the contacts are recipients: the sender is never one of them."""
    result = pipeline.run(match(sender="alice@xyz.de", to=("bob@acme.com",), found=LIST),
                          facts())
    assert result.findings.contacts == (BOB,)
    assert isinstance(result.decision, Ignored)


def test_machine_mail_from_an_unauthorized_sender_is_refused_first() -> None:
    result = pipeline.run(match(sender="mailer-daemon@evil.example", found=REPORT), facts())
    assert isinstance(result.decision, pipeline.Refused)
    assert [e.step for e in result.evidence] == ["sender"]


def test_a_person_s_mail_passes_the_step_with_nothing_found() -> None:
    result = pipeline.run(match("AW: XYZ Lead 11111", found=None), facts())
    assert result.decision == Filed(LEAD_ACME, ACME, BOB, (BOB,))
    [step] = [e for e in result.evidence if e.step == "machine"]
    assert (step.found, step.detail) == ("nothing", {})


def test_a_person_s_mail_without_a_number_still_waits() -> None:
    decision = pipeline.run(match("AW: Angebot", found=None), facts()).decision
    assert isinstance(decision, Queued)


def test_the_step_alone_sets_the_finding_and_adds_its_evidence() -> None:
    before = Findings(direction=Direction.INBOUND, contacts=(BOB,))
    after = machine.check(match(found=REPORT), facts(), before)
    assert after.machine == REPORT
    assert after.contacts == (BOB,) and after.direction is Direction.INBOUND
    assert [e.step for e in after.evidence] == ["machine"]
    assert after.evidence[0].detail == {"reason": "delivery_report", "header": "MAIL FROM",
                                        "value": "<>"}


def test_the_step_is_declared_right_after_contact() -> None:
    steps = list(pipeline.STEPS)
    assert steps.index(machine.check) == steps.index(contact.check) + 1
    assert machine.NAME == "machine" and machine.DESCRIPTION
