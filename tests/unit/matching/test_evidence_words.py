"""What each step records, word for word: `pending show` and `explain` print it to the
person who decides, and the stored message keeps it.

Each case is one mail on hand-made facts, and the trail of (step, found, detail) it leaves.
A change of wording is a change of what people read: it changes this table too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from crm_mailer.mail.forward import ForwardedOriginal
from crm_mailer.mail.parse import ParsedMessage
from crm_mailer.mail.proof import SenderPolicy, Verdict
from crm_mailer.matching import pipeline
from crm_mailer.matching.facts import MatchInput, ThreadRef, ThreadState
from crm_mailer.matching.number import subject_numbers
from tests.unit.matching.test_conversation_steps import MUELLER_DEAL, RELAUNCH, with_
from tests.unit.matching.test_conversation_steps import run as run_inbound
from tests.unit.matching.test_pipeline import ACME, LEAD_ACME, facts, run

Trail = list[tuple[str, str, dict[str, Any]]]

ALIGNED = {"policy": "aligned", "source": "from", "unproven": False}
SINGLE_LEAD_NOT_NEEDED = ("single_lead", "not needed",
                      {"why": "an earlier step decided, or no company is known"})


def trail(result: pipeline.MatchResult, *steps: str) -> Trail:
    return [(e.step, e.found, dict(e.detail)) for e in result.evidence
            if not steps or e.step in steps]


def test_an_outbound_mail_filed_by_its_subject_number() -> None:
    assert trail(run("XYZ Lead 11111")) == [
        ("sender", "outbound", {"sender": "alice@xyz.de", **ALIGNED,
                                "why": "xyz.de is a sender domain of the tenant"}),
        ("contact", "bob@acme.com", {"looked_up": ["bob@acme.com"]}),
        ("machine", "nothing", {}),
        ("company", "acme", {"why": "company of the matched contact"}),
        ("number", "lead 11111", {"tokens": [11111]}),
        ("thread", "not needed", {"why": "the subject number decides"}),
        ("name", "not needed", {"why": "an earlier step decided"}),
        SINGLE_LEAD_NOT_NEEDED,
        ("decide", "filed on lead 11111", {"contact": "bob@acme.com", "by": "number"}),
    ]


def test_an_outbound_mail_from_a_sub_domain_to_a_stranger() -> None:
    result = run("Hallo", sender="anna@vertrieb.xyz.de", to=("x@unknown.example",))
    assert trail(result) == [
        ("sender", "outbound", {"sender": "anna@vertrieb.xyz.de", **ALIGNED,
                                "why": "vertrieb.xyz.de is a sender domain of the tenant "
                                       "(under xyz.de)"}),
        ("contact", "nothing", {"looked_up": ["x@unknown.example"]}),
        ("machine", "nothing", {}),
        ("company", "nothing", {"why": "no counterpart domain or contact belongs to a company"}),
        ("number", "nothing", {"tokens": []}),
        ("thread", "nothing", {"why": "the mail refers to no earlier mail"}),
        ("name", "nothing", {"why": "no open lead's or active project's whole name is in the "
                                    "subject"}),
        SINGLE_LEAD_NOT_NEEDED,
        ("decide", "queued", {"reasons": ["no_number", "no_contact"]}),
    ]


def test_every_recipient_that_is_a_contact_is_recorded_in_order() -> None:
    result = run("Lead 11111", to=("carol@acme.com", "x@unknown.example"), cc=("bob@acme.com",))
    assert trail(result, "contact") == [
        ("contact", "carol@acme.com, bob@acme.com",
         {"looked_up": ["carol@acme.com", "x@unknown.example", "bob@acme.com"]}),
    ]


def test_an_internal_mail_to_a_colleague_has_no_counterpart() -> None:
    result = run("Hallo", to=("mia@xyz.de",), cc=("crm@xyz.hq.example",))
    assert trail(result, "contact", "company") == [
        ("contact", "nothing", {"looked_up": []}),
        ("company", "nothing", {"why": "no counterpart domain or contact belongs to a company"}),
    ]


def test_an_inbound_mail_from_a_companys_sub_domain_replying_to_unknown_mail() -> None:
    result = run_inbound("Kurze Frage", sender="max@vertrieb.acme.com", references=("u@x",))
    assert trail(result) == [
        ("sender", "inbound", {"sender": "max@vertrieb.acme.com", **ALIGNED,
                               "why": "vertrieb.acme.com is a domain of company acme "
                                      "(under acme.com)"}),
        ("contact", "nothing", {"looked_up": ["max@vertrieb.acme.com"]}),
        ("machine", "nothing", {}),
        ("company", "acme", {"why": "sender domain acme.com"}),
        ("number", "nothing", {"tokens": []}),
        ("thread", "nothing", {"why": "no referenced mail of this tenant was filed or waits"}),
        ("name", "nothing", {"why": "no open lead's or active project's whole name is in the "
                                    "subject"}),
        ("single_lead", "nothing", {"open_leads": 0}),
        ("decide", "queued", {"reasons": ["no_number", "no_contact"]}),
    ]


def test_an_inbound_mail_from_a_companys_own_domain() -> None:
    assert trail(run_inbound("Kurze Frage"), "sender") == [
        ("sender", "inbound", {"sender": "bob@acme.com", **ALIGNED,
                               "why": "acme.com is a domain of company acme"}),
    ]


def test_an_inbound_mail_from_a_contact_without_a_company_domain() -> None:
    result = run("Lead 11111", sender="free@mail.example", to=("alice@xyz.de",))
    assert trail(result, "sender", "company") == [
        ("sender", "inbound", {"sender": "free@mail.example", **ALIGNED,
                               "why": "free@mail.example is a contact"}),
        ("company", "nothing", {"why": "no counterpart domain or contact belongs to a company"}),
    ]


@pytest.mark.parametrize("ref, expected", [
    (ThreadRef("a@x", ThreadState.FILED, LEAD_ACME, ACME.id),
     ("thread", "lead 11111", {"message_id": "a@x",
                               "why": "the mail it replies to is filed there"})),
    (ThreadRef("a@x", ThreadState.FILED, None, ACME.id),
     ("thread", "nothing", {"message_id": "a@x",
                            "why": "the mail it replies to was filed without a lead or project"})),
    (ThreadRef("a@x", ThreadState.WAITING),
     ("thread", "waits", {"message_id": "a@x",
                          "why": "the mail it replies to waits in the queue"})),
], ids=["filed there", "filed without a record", "waiting"])
def test_a_reply_to_known_mail(ref: ThreadRef, expected: tuple[str, str, dict[str, Any]]) -> None:
    result = run_inbound("AW: Angebot", references=("a@x",), tenant=with_(threads={"a@x": ref}))
    assert trail(result, "thread") == [expected]


def test_the_single_open_lead_of_the_company() -> None:
    result = run_inbound("Kurze Frage", tenant=with_(company_records={ACME.id: (RELAUNCH,)}))
    assert trail(result, "single_lead", "decide") == [
        ("single_lead", "lead 11111", {"why": "the only open lead of company acme"}),
        ("decide", "queued", {"reasons": ["no_number"]}),
    ]


@pytest.mark.parametrize("subject, expected", [
    ("AW: Website-Relaunch", ("name", "lead 11111", {"names": ["Website-Relaunch"],
                                                     "whose": "the mail's company"})),
    ("Müller-Deal", ("name", "lead 11112", {"names": ["Müller-Deal"],
                                            "whose": "another company"})),
])
def test_a_name_in_the_subject(subject: str, expected: tuple[str, str, dict[str, Any]]) -> None:
    tenant = with_(company_records={ACME.id: (RELAUNCH,)}, named=(RELAUNCH, MUELLER_DEAL))
    assert trail(run_inbound(subject, tenant=tenant), "name") == [expected]


def test_a_forward_to_crm_alone_looks_up_the_originals_counterpart() -> None:
    original = ForwardedOriginal(from_address="bob@acme.com", from_name=None, to=(), cc=(),
                                 subject="Angebot", sent_at=None, message_id=None,
                                 source="inline:outlook")
    message = ParsedMessage(message_id="m@x", message_id_derived=False, subject="WG: Angebot",
                            from_address="alice@xyz.de", to=("crm@xyz.hq.example",), cc=(),
                            sent_at=None, body="", forwarded=original)
    result = pipeline.run(MatchInput(message, None, (), {SenderPolicy.ALIGNED: Verdict(True, "")}),
                          facts())
    assert trail(result, "contact") == [
        ("contact", "bob@acme.com", {"looked_up": ["bob@acme.com"],
                                     "why": "forwarded to crm@ alone: the original's "
                                            "(inline:outlook)"}),
    ]


def refusal(sender: str | None, envelope_sender: str | None,
            verdicts: Mapping[SenderPolicy, Verdict]) -> tuple[pipeline.MatchResult, str]:
    message = ParsedMessage(message_id="m@x", message_id_derived=False, subject="Lead 11111",
                            from_address=sender, to=("bob@acme.com",), cc=(), sent_at=None,
                            body="")
    result = pipeline.run(MatchInput(message, envelope_sender, subject_numbers("Lead 11111"),
                                     verdicts), facts())
    assert isinstance(result.decision, pipeline.Refused), result.decision
    return result, result.decision.why


@pytest.mark.parametrize("sender, envelope, verdicts, source, unproven, why", [
    ("mallory@evil.example", None, {}, "from", False, "unknown sender"),
    (None, "mallory@evil.example", {}, "envelope", False, "unknown sender"),
    ("alice@xyz.de", None, {}, "from", True,
     "not proven under policy 'aligned': no proof of the sender was gathered"),
    ("alice@xyz.de", None, {SenderPolicy.ALIGNED: Verdict(False, "no DKIM signature")}, "from",
     True, "not proven under policy 'aligned': no DKIM signature"),
    ("alice@xyz.de", None, {SenderPolicy.ALIGNED: Verdict(False, "not under policy 'aligned'")},
     "from", True, "not under policy 'aligned'"),  # a reason naming the policy stays as it is
], ids=["unknown From", "unknown envelope sender", "no proof", "failed proof",
        "failed proof naming the policy"])
def test_a_refused_sender(sender: str | None, envelope: str | None,
                          verdicts: Mapping[SenderPolicy, Verdict], source: str, unproven: bool,
                          why: str) -> None:
    result, refused_why = refusal(sender, envelope, verdicts)
    assert trail(result) == [
        ("sender", "refused", {"sender": sender or envelope, "source": source, "why": why,
                               "policy": "aligned", "unproven": unproven}),
    ]
    assert refused_why == why
