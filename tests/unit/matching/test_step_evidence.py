"""What the thread and single-lead steps record for the log, the queue and `pending show`.

Added for mutants of thread.check and single_lead.check that survived bench/mutation.py:
no test pinned what the steps record (the words of each "why" are left free).
"""

from __future__ import annotations

from crm_mailer.matching.facts import RecordKind, RecordRef, ThreadRef, ThreadState
from tests.unit.matching.test_conversation_steps import RELAUNCH, UMZUG, WARTUNG, run, with_
from tests.unit.matching.test_pipeline import ACME, LEAD_ACME


def thread_evidence(references: tuple[str, ...], *refs: ThreadRef) -> tuple[str, dict[str, object]]:
    result = run("AW: Angebot", references=references,
                 tenant=with_(threads={ref.message_id: ref for ref in refs}))
    [thread] = [e for e in result.evidence if e.step == "thread"]
    return thread.found, dict(thread.detail)


def test_a_parent_filed_there_is_recorded_with_its_message_id() -> None:
    found, detail = thread_evidence(("a@x",), ThreadRef("a@x", ThreadState.FILED, LEAD_ACME,
                                                        ACME.id))
    assert (found, detail["message_id"], list(detail)) == ("lead 11111", "a@x",
                                                           ["message_id", "why"])


def test_a_parent_filed_without_a_record_is_recorded_with_its_message_id() -> None:
    found, detail = thread_evidence(("a@x",), ThreadRef("a@x", ThreadState.FILED, None, ACME.id))
    assert (found, detail["message_id"], list(detail)) == ("nothing", "a@x",
                                                           ["message_id", "why"])


def test_references_to_unknown_mail_record_nothing() -> None:
    found, detail = thread_evidence(("unknown@x",))
    assert (found, list(detail)) == ("nothing", ["why"])


def test_no_references_and_unknown_references_are_told_apart() -> None:
    _, unknown = thread_evidence(("unknown@x",))
    _, none = thread_evidence(())
    assert unknown["why"] and none["why"] and unknown["why"] != none["why"]


def single_lead_evidence(*records: RecordRef) -> tuple[str, dict[str, object]]:
    result = run("Kurze Frage", tenant=with_(company_records={ACME.id: records}))
    [single] = [e for e in result.evidence if e.step == "single_lead"]
    return single.found, dict(single.detail)


def test_the_suggested_lead_is_recorded() -> None:
    found, detail = single_lead_evidence(RELAUNCH, UMZUG)  # a project is no open lead
    assert (found, list(detail)) == ("lead 11111", ["why"])


def test_more_than_one_open_lead_is_recorded_as_two() -> None:
    third = RecordRef(RecordKind.LEAD, 106, 11118, ACME.id, "Dritter")
    assert single_lead_evidence(RELAUNCH, WARTUNG, third) == ("nothing", {"open_leads": 2})
