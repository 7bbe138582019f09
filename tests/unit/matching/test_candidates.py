"""What a queued mail offers a person to choose from (decide.candidates), on hand-made facts.

Added for mutants of `candidates` that survived bench/mutation.py: no test pinned these.
"""

from __future__ import annotations

from crm_mailer.matching.decide import Reason
from crm_mailer.matching.facts import ThreadRef, ThreadState
from tests.unit.matching.test_conversation_steps import queued, run, with_
from tests.unit.matching.test_pipeline import ACME


def test_a_waiting_parent_passes_on_its_project_candidates() -> None:
    threads = {"a@x": ThreadRef("a@x", ThreadState.WAITING,
                                candidates={"projects": [20001], "companies": ["mueller"]})}
    result = run("AW: Angebot", references=("a@x",), tenant=with_(threads=threads))
    [thread] = [e for e in result.evidence if e.step == "thread"]
    assert (thread.found, thread.detail["message_id"], list(thread.detail)) == (
        "waits", "a@x", ["message_id", "why"])
    decision = queued(result)
    assert decision.reasons == (Reason.THREAD_WAITING,)
    assert decision.candidates["projects"] == [20001]
    assert decision.candidates["companies"] == ["acme", "mueller"]


def test_the_company_found_by_domain_alone_is_a_candidate() -> None:
    # Neither a contact nor a record names acme: only the sender's domain does.
    result = run("Angebot", sender="unknown@acme.com")
    assert result.findings.company == ACME
    assert not result.findings.contacts
    decision = queued(result)
    assert decision.reasons == (Reason.NO_NUMBER, Reason.NO_CONTACT)
    assert decision.candidates == {"leads": [], "projects": [], "contacts": [],
                                   "companies": ["acme"]}
