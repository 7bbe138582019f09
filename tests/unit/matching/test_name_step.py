"""Which companies' names the name step looks at, and names without words (issue 9, rule 3).

Added for mutants of name.company_ids, subject.contains_words and company._find that
survived bench/mutation.py: no test pinned these.
"""

from __future__ import annotations

from crm_mailer.matching.decide import Filed, Reason
from crm_mailer.matching.facts import ContactRef, RecordKind, RecordRef
from tests.unit.matching import test_pipeline
from tests.unit.matching.test_conversation_steps import (
    MUELLER_DEAL,
    RELAUNCH,
    WARTUNG,
    queued,
    run,
    with_,
)
from tests.unit.matching.test_pipeline import ACME, BOB, JUERGEN, LEAD_MUELLER, MUELLER, facts

NAMELESS = RecordRef(RecordKind.LEAD, 104, 11116, ACME.id, "–")  # no word in its name
HAUSBAU = RecordRef(RecordKind.LEAD, 105, 11117, None, "Hausbau")  # a lead of no company


def test_the_company_found_by_domain_counts_as_the_mails_company() -> None:
    # The sender is no contact: only acme's domain makes acme's name the mail's own.
    result = run("Website-Relaunch", sender="unknown@acme.com",
                 tenant=with_(company_records={ACME.id: (RELAUNCH,)}))
    assert result.findings.records == (RELAUNCH,)
    assert result.findings.source == "name"
    assert queued(result).reasons == (Reason.NO_CONTACT,)


def test_every_contacts_company_counts_not_only_the_first() -> None:
    # Outbound to juergen (mueller) and bob (acme): the company found is mueller's, and
    # acme's lead named in the subject is still the mail's own, filed with bob.
    result = test_pipeline.run("Website-Relaunch", to=(JUERGEN.email,), cc=(BOB.email,),
                               tenant=with_(company_records={ACME.id: (RELAUNCH,)}))
    assert result.decision == Filed(RELAUNCH, ACME, BOB, (JUERGEN, BOB))
    [name] = [e for e in result.evidence if e.step == "name"]
    assert (name.found, name.detail) == ("lead 11111", {"names": ["Website-Relaunch"],
                                                        "whose": "the mail's company"})


def test_a_contact_without_company_leaves_a_companyless_name_a_candidate() -> None:
    result = run("Hausbau", sender="free@mail.example", tenant=with_(named=(HAUSBAU,)))
    assert result.findings.records == (HAUSBAU,)
    decision = queued(result)
    assert decision.reasons == (Reason.OTHER_COMPANYS_NAME,)
    assert decision.candidates["leads"] == [11117]
    [name] = [e for e in result.evidence if e.step == "name"]
    assert (name.found, name.detail) == ("lead 11117", {"names": ["Hausbau"],
                                                        "whose": "another company"})


def test_a_name_without_words_is_in_no_subject() -> None:
    # Two open leads: nothing is suggested either; a wordless name must not file the mail.
    decision = queued(run("Angebot", tenant=with_(company_records={ACME.id: (NAMELESS, RELAUNCH)},
                                                 named=(NAMELESS, RELAUNCH))))
    assert decision.reasons == (Reason.NO_NUMBER,)
    assert decision.candidates["leads"] == []


def test_another_companys_name_not_in_the_subject_is_no_candidate() -> None:
    result = run("Angebot", tenant=with_(named=(MUELLER_DEAL,)))
    assert result.findings.records == ()
    assert queued(result).reasons == (Reason.NO_NUMBER,)
    # What each step found, as `crm-mailer pending show` lists it.
    assert [(e.step, e.found) for e in result.evidence] == [
        ("sender", "inbound"), ("contact", "bob@acme.com"), ("machine", "nothing"),
        ("company", "acme"), ("number", "nothing"), ("thread", "nothing"), ("name", "nothing"),
        ("single_lead", "nothing"), ("decide", "queued")]
    assert [list(e.detail) for e in result.evidence[5:7]] == [["why"]] * 2
    assert result.evidence[7].detail == {"open_leads": 0}


def test_several_names_are_all_recorded() -> None:
    tenant = with_(company_records={ACME.id: (RELAUNCH, WARTUNG)})
    [name] = [e for e in run("Website-Relaunch, Wartung 2027", tenant=tenant).evidence
              if e.step == "name"]
    assert name.found == "lead 11111, lead 11115"


def test_outbound_the_contacts_company_counts_where_the_address_names_none() -> None:
    # Added for company._find: max writes from a free-mail address but belongs to mueller.
    max_ = ContactRef(14, "max@gmx.example", MUELLER.id)
    tenant = with_(contacts={**facts().contacts, max_.email: max_})
    result = test_pipeline.run("Lead 11112", to=(max_.email,), tenant=tenant)
    assert result.findings.company == MUELLER
    assert result.decision == Filed(LEAD_MUELLER, MUELLER, max_, (max_,))


def test_outbound_the_contacts_company_wins_inbound_the_senders_domain() -> None:
    # Added for company._find: a mueller contact with an acme.com address.
    lent = ContactRef(15, "lent@acme.com", MUELLER.id)
    tenant = with_(contacts={**facts().contacts, lent.email: lent})
    assert test_pipeline.run("Angebot", to=(lent.email,), tenant=tenant).findings.company == MUELLER
    inbound = test_pipeline.run("Angebot", sender=lent.email, to=("alice@xyz.de",), tenant=tenant)
    assert inbound.findings.company == ACME
    [company] = [e for e in inbound.evidence if e.step == "company"]
    assert (company.found, list(company.detail)) == ("acme", ["why"])
