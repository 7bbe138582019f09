"""The thread, name and single-lead steps on hand-made facts (issue 9, rules 2-4)."""

from __future__ import annotations

import dataclasses

from crm_mailer.mail.parse import ParsedMessage
from crm_mailer.matching import pipeline
from crm_mailer.matching.decide import Filed, Queued, Reason
from crm_mailer.matching.facts import (
    MatchInput,
    RecordKind,
    RecordRef,
    TenantFacts,
    ThreadRef,
    ThreadState,
)
from crm_mailer.matching.number import subject_numbers
from tests.unit.matching.test_pipeline import (
    ACME,
    BOB,
    JUERGEN,
    LEAD_ACME,
    LEAD_MUELLER,
    MUELLER,
    PROVEN,
    facts,
)

RELAUNCH = RecordRef(RecordKind.LEAD, 100, 11111, ACME.id, "Website-Relaunch")
WARTUNG = RecordRef(RecordKind.LEAD, 103, 11115, ACME.id, "Wartung 2027")
UMZUG = RecordRef(RecordKind.PROJECT, 202, 20002, ACME.id, "Umzug")
MUELLER_DEAL = RecordRef(RecordKind.LEAD, 101, 11112, MUELLER.id, "Müller-Deal")


def run(subject: str, *, references: tuple[str, ...] = (), sender: str = "bob@acme.com",
        tenant: TenantFacts | None = None) -> pipeline.MatchResult:
    message = ParsedMessage(message_id="m@x", message_id_derived=False, subject=subject,
                            from_address=sender, to=("alice@xyz.de",), cc=(), sent_at=None,
                            body="", references=references)
    return pipeline.run(MatchInput(message, None, subject_numbers(subject), PROVEN),
                        tenant or facts())


def with_(**changes: object) -> TenantFacts:
    return dataclasses.replace(facts(), **changes)  # type: ignore[arg-type]


def queued(result: pipeline.MatchResult) -> Queued:
    assert isinstance(result.decision, Queued), result.decision
    return result.decision


def test_the_nearest_known_reference_decides_in_the_order_given() -> None:
    threads = {"a@x": ThreadRef("a@x", ThreadState.FILED, LEAD_ACME, ACME.id),
               "b@x": ThreadRef("b@x", ThreadState.FILED, LEAD_MUELLER, MUELLER.id)}
    result = run("AW: Angebot", references=("unknown@x", "a@x", "b@x"),
                 tenant=with_(threads=threads))
    assert result.decision == Filed(LEAD_ACME, ACME, BOB, (BOB,))
    [thread] = [e for e in result.evidence if e.step == "thread"]
    assert thread.detail["message_id"] == "a@x"


def test_a_subject_number_wins_over_the_thread() -> None:
    threads = {"b@x": ThreadRef("b@x", ThreadState.FILED, LEAD_MUELLER, MUELLER.id)}
    result = run("AW: Lead 11111", references=("b@x",), tenant=with_(threads=threads))
    assert result.decision == Filed(LEAD_ACME, ACME, BOB, (BOB,))


def test_a_waiting_parent_makes_the_reply_wait_with_its_candidates() -> None:
    threads = {"a@x": ThreadRef("a@x", ThreadState.WAITING,
                                candidates={"leads": [11111, 11112], "contacts": ["x@acme.com"]})}
    decision = queued(run("AW: Angebot", references=("a@x",), tenant=with_(threads=threads)))
    assert decision.reasons == (Reason.THREAD_WAITING,)
    assert decision.candidates["leads"] == [11111, 11112]
    assert decision.candidates["contacts"] == ["bob@acme.com", "x@acme.com"]


def test_a_parent_filed_without_a_record_gives_no_record() -> None:
    threads = {"a@x": ThreadRef("a@x", ThreadState.FILED, None, ACME.id)}
    decision = queued(run("AW: Angebot", references=("a@x",), tenant=with_(threads=threads)))
    assert decision.reasons == (Reason.NO_NUMBER,)


def test_a_reply_from_a_contact_of_another_company_is_a_thread_conflict() -> None:
    threads = {"a@x": ThreadRef("a@x", ThreadState.FILED, LEAD_ACME, ACME.id)}
    decision = queued(run("AW: Angebot", references=("a@x",), sender=JUERGEN.email,
                          tenant=with_(threads=threads)))
    assert decision.reasons == (Reason.THREAD_CONFLICT,)
    assert decision.candidates["leads"] == [11111]


def own(*records: RecordRef) -> TenantFacts:
    return with_(company_records={ACME.id: records}, named=records)


def test_exactly_one_own_name_files_the_mail() -> None:
    result = run("Re: Fwd: Termin website-relaunch", tenant=own(RELAUNCH, WARTUNG, UMZUG))
    assert result.decision == Filed(RELAUNCH, ACME, BOB, (BOB,))


def test_a_project_name_files_on_the_project() -> None:
    result = run("AW: Umzug nächste Woche", tenant=own(RELAUNCH, UMZUG))
    assert result.decision == Filed(UMZUG, ACME, BOB, (BOB,))


def test_several_own_names_queue_with_all_of_them() -> None:
    decision = queued(run("Website-Relaunch und Wartung 2027", tenant=own(RELAUNCH, WARTUNG)))
    assert decision.reasons == (Reason.SEVERAL_NAMES,)
    assert decision.candidates["leads"] == [11111, 11115]


def test_only_another_companys_name_is_a_candidate_not_a_match() -> None:
    tenant = with_(company_records={ACME.id: (RELAUNCH,)}, named=(RELAUNCH, MUELLER_DEAL))
    decision = queued(run("AW: MÜLLER-DEAL", tenant=tenant))
    assert decision.reasons == (Reason.OTHER_COMPANYS_NAME,)
    assert decision.candidates["leads"] == [11112]
    assert decision.candidates["companies"] == ["acme", "mueller"]


def test_the_single_open_lead_is_suggested_never_filed() -> None:
    decision = queued(run("Kurze Frage", tenant=own(RELAUNCH)))
    assert decision.reasons == (Reason.NO_NUMBER,)
    assert decision.candidates["leads"] == [11111]


def test_two_open_leads_suggest_none() -> None:
    decision = queued(run("Kurze Frage", tenant=own(RELAUNCH, WARTUNG)))
    assert decision.candidates["leads"] == []
