"""What the thread step records for the log, the queue and `crm-mailer pending show`.

Added for mutants of thread.check that survived bench/mutation.py: no test pinned what
the step records (the words of each "why" are left free).
"""

from __future__ import annotations

from crm_mailer.matching.facts import ThreadRef, ThreadState
from tests.unit.matching.test_conversation_steps import run, with_
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
