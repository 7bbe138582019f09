"""A forward of the tenant's own mail, and what the number step records (hand-made facts).

Added for mutants of facts.forwarded_counterparts and number.check that survived
bench/mutation.py: no test pinned these.
"""

from __future__ import annotations

from crm_mailer.mail.forward import ForwardedOriginal
from crm_mailer.mail.parse import ParsedMessage
from crm_mailer.matching import pipeline
from crm_mailer.matching.decide import Filed
from crm_mailer.matching.facts import MatchInput
from crm_mailer.matching.number import subject_numbers
from tests.unit.matching.test_pipeline import (
    ACME,
    BOB,
    LEAD_ACME,
    PROJECT_ACME,
    PROJECT_SAME_NUMBER,
    PROVEN,
    facts,
    run,
)


def test_a_forward_of_an_own_mail_takes_the_originals_customer_recipients() -> None:
    # alice forwards to crm@ alone the mail she wrote to bob (acme), cc her colleague mia.
    original = ForwardedOriginal(from_address="alice@xyz.de", from_name=None,
                                 to=("mia@xyz.de", "bob@acme.com"), cc=(), subject="Lead 11111",
                                 sent_at=None, message_id=None, source="inline:outlook")
    message = ParsedMessage(message_id="m@x", message_id_derived=False, subject="WG: Lead 11111",
                            from_address="alice@xyz.de", to=("crm@xyz.hq.example",), cc=(),
                            sent_at=None, body="", forwarded=original)
    result = pipeline.run(MatchInput(message, None, subject_numbers(message.subject), PROVEN),
                          facts())
    assert result.decision == Filed(LEAD_ACME, ACME, BOB, (BOB,))
    [contact] = [e for e in result.evidence if e.step == "contact"]
    assert contact.detail["looked_up"] == ["bob@acme.com"]


def test_the_number_step_records_what_it_found_and_the_tokens() -> None:
    result = run("Lead 11111 und 20001 und 99999",
                 tenant=facts((LEAD_ACME, PROJECT_ACME, PROJECT_SAME_NUMBER)))
    [number] = [e for e in result.evidence if e.step == "number"]
    assert number.found == "lead 11111, project 11111, project 20001"
    assert number.detail == {"tokens": [11111, 20001, 99999]}


def test_the_number_step_records_nothing_found() -> None:
    [number] = [e for e in run("Lead 99999").evidence if e.step == "number"]
    assert number.found == "nothing"
    assert number.detail == {"tokens": [99999]}


def test_a_deciding_number_is_the_source_and_the_later_steps_stand_aside() -> None:
    result = run("XYZ Lead 11111")
    assert result.findings.source == "number"
    assert [(e.step, e.found) for e in result.evidence[4:]] == [
        ("number", "lead 11111"), ("thread", "not needed"), ("name", "not needed"),
        ("single_lead", "not needed"), ("decide", "filed on lead 11111")]
    # Each says why under "why", the key `crm-mailer pending show` and `explain` print as prose.
    assert [list(e.detail) for e in result.evidence[5:8]] == [["why"]] * 3
    assert result.evidence[-1].detail == {"contact": "bob@acme.com", "by": "number"}
