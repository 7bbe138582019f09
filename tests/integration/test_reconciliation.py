"""The confirmation queue end to end: mail over SMTP, decided through the API, both backends."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer.db.engine import writing
from crm_mailer.db.models import HistoryChange
from crm_mailer.errors import Conflict, InvalidRequest, NotFound
from crm_mailer.leads import LeadLibrary, tenant_scope
from crm_mailer.leads.scope import Lookup
from crm_mailer.matching import pipeline
from crm_mailer.reconciliation import ReconciliationQueue, expire_pending
from crm_mailer.reconciliation.filing import place
from crm_mailer.reconciliation.queue import PREVIEW_CHARS
from tests import factories
from tests.conftest import SmtpClient, load_directory
from tests.integration.test_smtp_ingest import history, pending


def directory() -> dict[str, Any]:
    document = factories.directory(
        contacts=[{"email": "bob@acme.com", "name": "Bob Bauer", "company": "acme"},
                  {"email": "carol@acme.com", "name": "Carol", "company": "acme"}])
    document["tenants"][0]["companies"].append(
        {"key": "globex", "name": "Globex", "domains": ["globex.example"]})
    document["tenants"][0]["leads"].append({"number": 11112, "name": "Globex-Deal",
                                            "company": "globex"})
    other = factories.second_tenant()
    document["tenants"].append(other)
    return document


@pytest.fixture
async def crm(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    await load_directory(sessions, directory())
    return sessions


async def decide(sessions: async_sessionmaker[AsyncSession], call: str, *args: Any,
                 slug: str = "xyz", **kwargs: Any) -> Any:
    """One API call in its own transaction, as the main app makes it."""
    async with writing(sessions) as session:
        queue = ReconciliationQueue(session, await tenant_scope(session, slug))
        return await getattr(queue, call)(*args, **kwargs)


async def queued(smtp: SmtpClient, sessions: async_sessionmaker[AsyncSession],
                 **mail: Any) -> dict[str, Any]:
    assert (await smtp.send(factories.mail(**mail))).code == 250
    return (await pending(sessions))[0]


async def unprocessable(smtp: SmtpClient, sessions: async_sessionmaker[AsyncSession],
                        monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A mail kept unprocessable (the matcher fails): no candidates at all."""
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "run", lambda *args: 1 / 0)
        return await queued(smtp, sessions, subject="Lead 11111")


async def to_both_tenants(smtp: SmtpClient, sender: str, subject: str) -> None:
    """One mail to xyz and to the other tenant: each keeps its own copy, same Message-ID."""
    reply = await smtp.send(factories.mail(sender=sender, to="x@other.example", subject=subject),
                            sender=sender,
                            recipients=["crm@xyz.hq.example", "crm@crm.other.example"])
    assert reply.code == 250


async def test_a_person_confirms_with_a_correction_and_it_is_filed_once(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    item = await queued(smtp, crm, subject="Lead 11111 und 20001", to="bob@acme.com")
    assert item["reasons"] == ["several_numbers"]
    with pytest.raises(InvalidRequest, match=r"^several candidates \(lead 11111, project 20001\): "
                                             r"choose the lead or project$"):
        await decide(crm, "confirm", item["id"], by="anna")
    entry = await decide(crm, "confirm", item["id"], by="anna", lead=11111,
                         contact="carol@acme.com")
    assert (entry["lead"], entry["contact"], entry["company"]) == (11111, "carol@acme.com",
                                                                   "acme")
    assert entry["filed_by"] == "anna"
    assert [e["id"] for e in await history(crm)] == [entry["id"]]
    assert await pending(crm) == []
    with pytest.raises(Conflict, match=r"pending mail \d+ was already confirmed by anna at "):
        await decide(crm, "confirm", item["id"], by="ben", project=20001)
    assert len(await history(crm)) == 1


async def test_confirming_the_suggestion_files_it(crm: async_sessionmaker[AsyncSession],
                                                  smtp: SmtpClient) -> None:
    item = await queued(smtp, crm, subject="Angebot ohne Nummer")
    assert item["candidates"]["leads"] == [11111]  # acme's single open lead (issue 9, rule 4)
    entry = await decide(crm, "confirm", item["id"], by="anna")
    assert (entry["company"], entry["contact"], entry["lead"]) == ("acme", "bob@acme.com", 11111)
    assert entry["participants"] == ["bob@acme.com"]  # not the other tenant's bob as well


@pytest.mark.parametrize(("contact", "participants"), [
    ("bob@acme.com", ["bob@acme.com", "carol@acme.com"]),
    ("carol@acme.com", ["carol@acme.com", "bob@acme.com"]),  # the chosen one comes first
])
async def test_confirmed_mail_keeps_every_known_recipient_as_a_participant(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient, contact: str,
        participants: list[str]) -> None:
    item = await queued(smtp, crm, subject="Angebot ohne Nummer", cc="carol@acme.com")
    entry = await decide(crm, "confirm", item["id"], by="anna", contact=contact)
    assert entry["participants"] == participants


async def test_a_suggested_contact_removed_since_gives_way_to_the_next(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    item = await queued(smtp, crm, subject="Angebot ohne Nummer", to="carol@acme.com",
                        cc="bob@acme.com")
    async with writing(crm) as session:  # as the main app may delete a contact
        await session.execute(text("DELETE FROM contacts WHERE email = 'carol@acme.com'"))
    entry = await decide(crm, "confirm", item["id"], by="anna", lead=11111)
    assert (entry["contact"], entry["participants"]) == ("bob@acme.com", ["bob@acme.com"])


async def test_the_one_candidate_project_is_what_a_plain_confirm_files_on(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    item = await queued(smtp, crm, subject="Support 20001", to="dave@acme.com")
    assert (item["reasons"], item["candidates"]["projects"]) == (["no_contact"], [20001])
    entry = await decide(crm, "confirm", item["id"], by="anna")
    assert (entry["company"], entry["lead"], entry["project"]) == ("acme", None, 20001)


async def test_the_one_candidate_company_is_what_a_plain_confirm_files_on(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    document = directory()
    document["tenants"][0]["companies"].append(
        {"key": "initech", "name": "Initech", "domains": ["initech.example"]})
    await load_directory(sessions, document)
    item = await queued(smtp, sessions, subject="Angebot", to="dave@initech.example")
    assert item["candidates"]["companies"] == ["initech"]
    entry = await decide(sessions, "confirm", item["id"], by="anna")
    assert (entry["company"], entry["contact"], entry["lead"]) == ("initech", None, None)


async def test_each_confirm_returns_the_entry_of_its_own_mail(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    for subject in ("Angebot ohne Nummer", "Rückfrage ohne Nummer"):
        await queued(smtp, crm, subject=subject)
    for item in await pending(crm):
        entry = await decide(crm, "confirm", item["id"], by="anna", lead=11111)
        assert entry["subject"] == item["subject"]


async def test_unprocessable_mail_is_confirmed_only_with_a_choice(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Kept with its error and no candidates at all: the person names where it goes.
    item = await unprocessable(smtp, crm, monkeypatch)
    assert (item["reasons"], item["candidates"]) == (["unprocessable"], {})
    with pytest.raises(InvalidRequest,
                       match=r"^which company\? name one \(candidates: none\)$"):
        await decide(crm, "confirm", item["id"], by="anna")
    entry = await decide(crm, "confirm", item["id"], by="anna", company="acme")
    assert (entry["company"], entry["lead"], entry["contact"]) == ("acme", None, None)


async def test_unprocessable_mail_confirmed_with_a_contact_alone_goes_to_its_company(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    item = await unprocessable(smtp, crm, monkeypatch)
    entry = await decide(crm, "confirm", item["id"], by="anna", contact="carol@acme.com")
    assert (entry["company"], entry["contact"], entry["lead"]) == ("acme", "carol@acme.com", None)


async def test_of_several_suggested_companies_none_is_chosen_for_the_person(
        crm: async_sessionmaker[AsyncSession]) -> None:
    async with writing(crm) as session:
        lookup = Lookup(session, await tenant_scope(session, "xyz"))
        with pytest.raises(InvalidRequest,
                           match=r"^which company\? name one \(candidates: acme, globex\)$"):
            await place(lookup, company=None, contact=None, lead=None, project=None,
                        suggested_companies=["acme", "globex"])
        one = await place(lookup, company=None, contact=None, lead=None, project=None,
                          suggested_companies=["globex"])
    assert (one.company.key, one.contact, one.lead, one.project) == ("globex", None, None, None)


async def test_mail_can_be_confirmed_onto_a_project(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    item = await queued(smtp, crm, subject="Angebot ohne Nummer")
    entry = await decide(crm, "confirm", item["id"], by="anna", project=20001)
    assert (entry["company"], entry["contact"], entry["lead"], entry["project"]) == (
        "acme", "bob@acme.com", None, 20001)
    [filed] = await history(crm)
    assert (filed["lead"], filed["project"]) == (None, 20001)


async def test_mail_to_no_known_contact_is_confirmed_without_one(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    item = await queued(smtp, crm, subject="Lead 11111", to="dave@acme.com")
    assert item["reasons"] == ["no_contact"]
    entry = await decide(crm, "confirm", item["id"], by="anna")
    assert (entry["company"], entry["contact"], entry["lead"], entry["participants"]) == (
        "acme", None, 11111, [])


async def test_two_people_confirming_at_once_exactly_one_wins(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    item = await queued(smtp, crm, subject="Lead 11111 und 20001")
    results = await asyncio.gather(
        *(decide(crm, "confirm", item["id"], by=f"user{i}", lead=11111) for i in range(5)),
        return_exceptions=True)
    winners = [r for r in results if isinstance(r, dict)]
    losers = [r for r in results if isinstance(r, Conflict)]
    assert len(winners) == 1 and len(losers) == 4, results
    assert all(winners[0]["filed_by"] in str(loser) for loser in losers)
    assert len(await history(crm)) == 1


@pytest.mark.parametrize("choice, error", [
    ({"lead": 11112, "contact": "bob@acme.com"}, "contact 'bob@acme.com' does not belong to "
                                                 "company 'globex'"),
    ({"lead": 11111, "company": "globex"}, "lead 11111 does not belong to company 'globex'"),
    ({"project": 20001, "company": "globex"},
     "project 20001 does not belong to company 'globex'"),
    ({"lead": 77777}, "no lead 77777 in tenant 'xyz'"),
    ({"project": 99999}, "no project 99999 in tenant 'xyz'"),
    ({"lead": 11111, "company": "nope"}, "no company 'nope' in tenant 'xyz'"),
    ({"lead": 11111, "project": 20001}, "choose a lead or a project, not both"),
])
async def test_choices_are_validated_and_a_refused_one_changes_nothing(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient, choice: dict[str, Any],
        error: str) -> None:
    item = await queued(smtp, crm, subject="Lead 11111 und 20001")
    with pytest.raises((InvalidRequest, NotFound), match=f"^{re.escape(error)}$"):
        await decide(crm, "confirm", item["id"], by="anna", **choice)
    assert [i["id"] for i in await pending(crm)] == [item["id"]]
    assert await history(crm) == []


async def test_reject_keeps_the_mail_for_audit_but_never_files_it(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    for subject in ("vorher", "privat", "nachher"):  # the one rejected is not the first
        assert (await smtp.send(factories.mail(subject=subject))).code == 250
    waiting = {entry["subject"]: entry for entry in await pending(crm)}
    item = waiting["privat"]
    rejected = await decide(crm, "reject", item["id"], by="ben", reason="private mail")
    assert (rejected["id"], rejected["subject"], rejected["state"], rejected["resolved_by"],
            rejected["note"]) == (item["id"], "privat", "rejected", "ben", "private mail")
    assert sorted(p["subject"] for p in await pending(crm)) == ["nachher", "vorher"]
    assert await history(crm) == []
    with pytest.raises(Conflict, match=rf"^pending mail {item['id']} was already rejected by "
                       r"ben at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"):
        await decide(crm, "confirm", item["id"], by="anna")
    for waiting_or_not in (item, waiting["vorher"]):  # another tenant learns nothing of it
        with pytest.raises(NotFound) as refused:
            await decide(crm, "reject", waiting_or_not["id"], by="eve", slug="other")
        assert str(refused.value) == f"no pending mail {waiting_or_not['id']} in tenant 'other'"
    assert sorted(p["subject"] for p in await pending(crm)) == ["nachher", "vorher"]


async def test_a_decision_in_a_session_that_read_the_item_before_returns_it_decided(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    """The main app may show an item and decide it in one session: the decision returns
    the item as it is now, not the copy read before."""
    item = await queued(smtp, crm, subject="privat")
    async with writing(crm) as session:
        queue = ReconciliationQueue(session, await tenant_scope(session, "xyz"))
        await queue.show(item["id"])
        rejected = await queue.reject(item["id"], by="anna", reason="private mail")
    assert (rejected["state"], rejected["resolved_by"]) == ("rejected", "anna")


async def test_show_explains_reasons_and_candidates(crm: async_sessionmaker[AsyncSession],
                                                    smtp: SmtpClient) -> None:
    item = await queued(smtp, crm, subject="Lead 11112", to="bob@acme.com")
    shown = await decide(crm, "show", item["id"])
    assert shown["reasons"] == [{"code": "company_mismatch", "text": "the lead's or project's "
                                 "company is not the contact's company"}]
    assert shown["candidates"]["leads"] == [{"number": 11112, "name": "Globex-Deal",
                                             "company": "globex",
                                             "why": "the subject holds the number 11112"}]
    assert shown["candidates"]["contacts"] == [{"email": "bob@acme.com", "name": "Bob Bauer",
                                                "company": "acme",
                                                "why": "recipient (To) of the mail"}]
    companies = {c["key"]: c["why"] for c in shown["candidates"]["companies"]}
    assert companies == {"acme": "domain of bob@acme.com; company of contact bob@acme.com",
                         "globex": "company of lead 11112"}
    assert shown["preview"] == "Hallo Bob," and shown["filed"] is None
    with pytest.raises(NotFound):
        await decide(crm, "show", item["id"], slug="other")  # never across tenants


async def test_show_gives_each_tenant_the_evidence_and_contact_of_its_own_copy(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    await queued(smtp, crm, subject="Angebot ohne Nummer")  # another mail of xyz, first
    # One mail to both tenants: lead 11112 is xyz's (globex); the other tenant has none.
    # Both know bob@acme.com, by different names.
    await to_both_tenants(smtp, "bob@acme.com", "Lead 11112")
    for slug, found, name, firm in (("xyz", "lead 11112", "Bob Bauer", "ACME AG"),
                                    ("other", "nothing", "Bob", "ACME (other's)")):
        [item] = [i for i in await pending(crm, slug) if i["subject"] == "Lead 11112"]
        shown = await decide(crm, "show", item["id"], slug=slug)
        assert [e["found"] for e in shown["evidence"] if e["step"] == "number"] == [found]
        assert shown["candidates"]["contacts"] == [{"email": "bob@acme.com", "name": name,
                                                    "company": "acme", "why": "sender of the mail"}]
        assert [c["name"] for c in shown["candidates"]["companies"] if c["key"] == "acme"] == [
            firm]


@pytest.mark.parametrize("length, preview", [
    (PREVIEW_CHARS, "x" * PREVIEW_CHARS),
    (PREVIEW_CHARS + 1, "x" * PREVIEW_CHARS + "\u2026"),
])
async def test_show_cuts_a_long_body_to_a_preview_and_says_so(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient, length: int,
        preview: str) -> None:
    item = await queued(smtp, crm, subject="Angebot ohne Nummer", body="x" * length)
    assert (await decide(crm, "show", item["id"]))["preview"] == preview


async def test_show_explains_lead_and_project_candidates_from_this_tenants_records(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    # Both tenants have a lead 11111 (the other's "Other's lead"): each show names its own.
    await to_both_tenants(smtp, "dave@acme.com", "Lead 11111 und 20001")
    expected = {
        "xyz": ([{"number": 11111, "name": "Website-Relaunch", "company": "acme",
                  "why": "the subject holds the number 11111"}],
                [{"number": 20001, "name": "Support 2026", "company": "acme",
                  "why": "the subject holds the number 20001"}]),
        "other": ([{"number": 11111, "name": "Other's lead", "company": "acme",
                    "why": "the subject holds the number 11111"}], []),
    }
    for slug, (leads, projects) in expected.items():
        [item] = await pending(crm, slug)
        shown = await decide(crm, "show", item["id"], slug=slug)
        assert (shown["candidates"]["leads"], shown["candidates"]["projects"]) == (leads,
                                                                                 projects)


async def test_show_never_names_the_entry_another_tenant_filed_for_the_same_mail(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    # Certain for the other tenant (it has no project 20001), two numbers for xyz.
    await to_both_tenants(smtp, "bob@acme.com", "Lead 11111 und 20001")
    assert [e["lead"] for e in await history(crm, "other")] == [11111]
    [item] = await pending(crm, "xyz")
    assert (await decide(crm, "show", item["id"]))["filed"] is None


async def test_show_of_candidates_deleted_since_names_only_their_keys(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    item = await queued(smtp, crm, subject="Lead 11112", to="bob@acme.com")
    async with writing(crm) as session:
        await LeadLibrary(session, await tenant_scope(session, "xyz")).delete(11112)
        await session.execute(text("DELETE FROM contacts WHERE email = 'bob@acme.com'"))
        await session.execute(text("DELETE FROM companies WHERE key = 'globex'"))
    candidates = (await decide(crm, "show", item["id"]))["candidates"]
    assert candidates["leads"] == [{"number": 11112, "name": None, "company": None,
                                    "why": "the subject holds the number 11112"}]
    assert candidates["contacts"] == [{"email": "bob@acme.com", "name": None, "company": None,
                                       "why": "recipient (To) of the mail"}]
    assert {c["key"]: (c["name"], c["why"]) for c in candidates["companies"]} == {
        "acme": ("ACME AG", "domain of bob@acme.com"), "globex": (None, "seen")}


async def test_show_says_a_contact_that_came_with_the_waiting_parent_is_no_party_here(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    parent = await queued(smtp, crm, subject="Angebot ohne Nummer", to="bob@acme.com")
    reply = factories.mail(sender="carol@acme.com", to="alice@xyz.de",
                           subject="AW: Angebot ohne Nummer",
                           headers={"In-Reply-To": f"<{parent['message_id']}>"})
    assert (await smtp.send(reply, sender="carol@acme.com")).code == 250
    [item] = [i for i in await pending(crm) if i["id"] != parent["id"]]
    contacts = (await decide(crm, "show", item["id"]))["candidates"]["contacts"]
    assert {c["email"]: c["why"] for c in contacts} == {
        "carol@acme.com": "sender of the mail", "bob@acme.com": "address of the mail"}


async def test_show_of_unprocessable_mail_has_no_candidates(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    item = await unprocessable(smtp, crm, monkeypatch)
    shown = await decide(crm, "show", item["id"])
    assert shown["candidates"] == {"leads": [], "projects": [], "contacts": [],
                                   "companies": []}
    assert [r["code"] for r in shown["reasons"]] == ["unprocessable"]


async def test_rematch_files_what_directory_changes_made_certain(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    await queued(smtp, crm, subject="Lead 11111", to="dave@acme.com")       # no_contact
    await queued(smtp, crm, subject="Lead 11119", to="bob@acme.com")        # unknown_number
    await queued(smtp, crm, subject="Lead 11118", to="erin@acme.com")       # both
    document = directory()
    tenant = document["tenants"][0]
    tenant["contacts"].append({"email": "dave@acme.com", "company": "acme"})
    tenant["leads"].append({"number": 11119, "name": "Neu", "company": "acme"})
    await load_directory(crm, document)
    report = await decide(crm, "rematch")
    # The third is updated: acme has two open leads now, so its single one is no longer
    # suggested (issue 9, rule 4).
    assert (report.filed, report.updated, report.unchanged) == (2, 1, 0)
    filed = await history(crm)
    assert sorted((e["lead"], e["contact"], e["filed_by"]) for e in filed) == [
        (11111, "dave@acme.com", "crm-mailer (rematch)"),
        (11119, "bob@acme.com", "crm-mailer (rematch)")]
    [left] = await pending(crm)
    assert left["reasons"] == ["unknown_number", "no_contact"]
    tenant["contacts"].append({"email": "erin@acme.com", "company": "acme"})
    await load_directory(crm, document)
    report = await decide(crm, "rematch")
    assert (report.filed, report.updated, report.unchanged) == (0, 1, 0)
    [left] = await pending(crm)
    assert left["reasons"] == ["unknown_number"] and left["candidates"]["contacts"] == [
        "erin@acme.com"]


async def test_rematch_files_a_reply_waiting_with_its_parent_in_the_same_pass(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    """Waiting items are matched again oldest first: the parent filed in the pass lets the
    reply that waits with it follow at once, not in the next rematch."""
    parent = await queued(smtp, crm, subject="Lead 11111", to="dave@acme.com",
                          message_id="<parent@xyz.de>")
    assert parent["reasons"] == ["no_contact"]
    assert (await smtp.send(factories.mail(
        subject="Re: Angebot", message_id="<reply@xyz.de>",
        headers={"In-Reply-To": "<parent@xyz.de>"}))).code == 250
    reply = next(i for i in await pending(crm) if i["id"] != parent["id"])
    assert reply["reasons"] == ["thread_waiting"]
    document = directory()
    document["tenants"][0]["contacts"].append({"email": "dave@acme.com", "company": "acme"})
    await load_directory(crm, document)
    report = await decide(crm, "rematch")
    assert (report.filed, report.updated, report.unchanged) == (2, 0, 0)
    assert sorted((e["lead"], e["contact"], e["subject"]) for e in await history(crm)) == [
        (11111, "bob@acme.com", "Re: Angebot"), (11111, "dave@acme.com", "Lead 11111")]
    assert await pending(crm) == []


async def test_a_filed_entry_can_be_moved_with_an_audit_record(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    assert (await smtp.send(factories.mail(subject="Lead 11111"))).code == 250
    assert (await smtp.send(factories.mail(subject="Lead 11111 again"))).code == 250
    other, entry = sorted(await history(crm), key=lambda e: e["id"])  # the later one moves
    with pytest.raises(InvalidRequest, match=r"^nothing to move: give a lead, a project or "
                                             r"a contact$"):
        await decide(crm, "move", entry["id"], by="anna")
    moved = await decide(crm, "move", entry["id"], by="anna", project=20001)
    assert (moved["lead"], moved["project"], moved["company"], moved["contact"]) == (
        None, 20001, "acme", "bob@acme.com")
    moved = await decide(crm, "move", entry["id"], by="ben", contact="carol@acme.com")
    assert (moved["project"], moved["contact"]) == (20001, "carol@acme.com")
    assert moved["participants"] == ["carol@acme.com", "bob@acme.com"]  # who it is on first
    with pytest.raises(InvalidRequest, match="does not belong to company 'globex'"):
        await decide(crm, "move", entry["id"], by="ben", lead=11112, contact="carol@acme.com")
    # To another company's lead: the company follows, a contact that no longer fits goes.
    moved = await decide(crm, "move", entry["id"], by="carl", lead=11112)
    assert (moved["lead"], moved["project"], moved["company"], moved["contact"]) == (
        11112, None, "globex", None)
    async with crm() as session:
        changes = (await session.scalars(select(HistoryChange).order_by(HistoryChange.id))).all()
    assert [(c.changed_by, c.before["lead"], c.after["project"]) for c in changes] == [
        ("anna", 11111, 20001), ("ben", None, 20001), ("carl", None, None)]
    with pytest.raises(NotFound, match=f"^no history entry {entry['id']} in tenant 'other'$"):
        await decide(crm, "move", entry["id"], by="eve", slug="other", lead=11111)
    untouched = {e["id"]: e for e in await history(crm)}[other["id"]]
    assert (untouched["lead"], untouched["contact"]) == (11111, "bob@acme.com")
    moved = await decide(crm, "move", other["id"], by="dora", lead=11112)  # the older one
    assert (moved["id"], moved["lead"], moved["company"]) == (other["id"], 11112, "globex")
    # An entry without a contact moves without one.
    moved = await decide(crm, "move", entry["id"], by="dora", project=20001)
    assert (moved["lead"], moved["project"], moved["company"], moved["contact"]) == (
        None, 20001, "acme", None)


async def test_a_move_onto_a_lead_without_company_is_refused_naming_the_entrys_company(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    # Neither the lead nor a contact names a company: the entry's own is the one checked.
    document = directory()
    document["tenants"][0]["leads"].append({"number": 11115, "name": "Ohne Firma"})
    await load_directory(sessions, document)
    assert (await smtp.send(factories.mail(subject="Lead 11111", to="dave@acme.com"))).code \
        == 250
    item = (await pending(sessions))[0]
    entry = await decide(sessions, "confirm", item["id"], by="anna")
    assert (entry["company"], entry["contact"], entry["lead"]) == ("acme", None, 11111)
    with pytest.raises(InvalidRequest, match=r"^lead 11115 does not belong to company 'acme'$"):
        await decide(sessions, "move", entry["id"], by="anna", lead=11115)


async def test_review_all_shows_each_item_with_its_own_entry_and_each_contacts_role(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    document = directory()
    document["tenants"][0]["review"] = "all"
    await load_directory(sessions, document)
    for subject in ("Lead 11111", "Lead 11111 Nachtrag"):
        mail = factories.mail(subject=subject, cc="carol@acme.com")
        assert (await smtp.send(mail)).code == 250
    entries = {e["subject"]: e["id"] for e in await history(sessions)}
    items = await pending(sessions)
    assert len(items) == 2
    for item in items:
        shown = await decide(sessions, "show", item["id"])
        assert shown["filed"]["id"] == entries[item["subject"]]
        assert [(c["email"], c["name"], c["why"]) for c in shown["candidates"]["contacts"]] == [
            ("bob@acme.com", "Bob Bauer", "recipient (To) of the mail"),
            ("carol@acme.com", "Carol", "recipient (Cc) of the mail")]


async def test_review_all_files_certain_mail_and_shows_it_for_a_check(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    document = directory()
    document["tenants"][0]["review"] = "all"
    await load_directory(sessions, document)
    reply = await smtp.send(factories.mail(subject="Lead 11111"))
    assert reply.code == 250 and "filed" in reply.text
    [entry] = await history(sessions)
    [item] = await pending(sessions)
    assert item["reasons"] == ["review"] and item["candidates"]["leads"] == [11111]
    assert (await decide(sessions, "show", item["id"]))["filed"]["id"] == entry["id"]
    corrected = await decide(sessions, "confirm", item["id"], by="anna", project=20001)
    assert (corrected["id"], corrected["project"], corrected["lead"]) == (entry["id"], 20001,
                                                                          None)
    assert len(await history(sessions)) == 1 and await pending(sessions) == []


async def test_under_review_all_confirming_returns_the_entry_of_that_mail(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    document = directory()
    document["tenants"][0]["review"] = "all"
    await load_directory(sessions, document)
    for subject in ("Lead 11111", "Lead 11111 again"):
        assert (await smtp.send(factories.mail(subject=subject))).code == 250
    for item in await pending(sessions):
        confirmed = await decide(sessions, "confirm", item["id"], by="anna")
        assert (confirmed["subject"], confirmed["lead"]) == (item["subject"], 11111)


async def test_a_correction_naming_only_the_company_keeps_a_lead_that_still_fits(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    document = directory()
    document["tenants"][0]["review"] = "all"
    await load_directory(sessions, document)
    assert (await smtp.send(factories.mail(subject="Lead 11111"))).code == 250
    [item] = await pending(sessions)
    kept = await decide(sessions, "confirm", item["id"], by="anna", company="acme",
                        contact="carol@acme.com")
    assert (kept["company"], kept["lead"], kept["contact"]) == ("acme", 11111,
                                                                "carol@acme.com")


async def test_a_correction_naming_only_the_company_keeps_a_project_that_still_fits(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    document = directory()
    document["tenants"][0]["review"] = "all"
    await load_directory(sessions, document)
    assert (await smtp.send(factories.mail(subject="Projekt 20001"))).code == 250
    [item] = await pending(sessions)
    kept = await decide(sessions, "confirm", item["id"], by="anna", company="acme",
                        contact="carol@acme.com")
    assert (kept["company"], kept["project"], kept["lead"], kept["contact"]) == (
        "acme", 20001, None, "carol@acme.com")


async def test_a_correction_to_another_company_drops_the_lead_that_no_longer_fits(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    document = directory()
    document["tenants"][0]["review"] = "all"
    await load_directory(sessions, document)
    assert (await smtp.send(factories.mail(subject="Lead 11111"))).code == 250
    [item] = await pending(sessions)
    moved = await decide(sessions, "confirm", item["id"], by="anna", company="globex")
    assert (moved["company"], moved["lead"], moved["contact"]) == ("globex", None, None)


async def test_expire_marks_old_waiting_mail_expired_and_keeps_it(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    item = await queued(smtp, crm, subject="alt")
    month = dt.timedelta(days=30)
    created = dt.datetime.fromisoformat(item["created_at"])
    async with writing(crm) as session:
        assert await expire_pending(session, older_than=month) == 0
        # Exactly 30 days old is not older than 30 days.
        assert await expire_pending(session, older_than=month, now=created + month) == 0
        later = created + month + dt.timedelta(seconds=1)
        assert await expire_pending(session, older_than=month, now=later) == 1
    assert await pending(crm) == [] and await history(crm) == []
    async with crm() as session:
        queue = ReconciliationQueue(session, await tenant_scope(session, "xyz"))
        [kept] = await queue.list_pending(include_resolved=True)
    assert (kept["id"], kept["state"], kept["resolved_by"], kept["resolved_at"]) == (
        item["id"], "expired", "crm-mailer (expired)", later.isoformat())


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=False)
async def test_listening_connection_hears_of_new_pending_mail(
        database_url: str, crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    heard: asyncio.Queue[str] = asyncio.Queue()
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(
        hide_password=False)
    listener = await asyncpg.connect(dsn)
    try:
        await listener.add_listener("crm_mailer_pending",
                                    lambda *args: heard.put_nowait(args[-1]))
        assert (await smtp.send(factories.mail(subject="ohne Nummer"))).code == 250
        payload = json.loads(await asyncio.wait_for(heard.get(), 10))
        [item] = await pending(crm)
        assert payload == {"tenant": "xyz", "id": item["id"]}
        assert (await smtp.send(factories.mail(subject="Lead 11111"))).code == 250
        # Certain mail is filed: nothing to pop up. Notifications arrive in commit order,
        # so the next one heard is the later mail's only if the filed one sent none.
        marker = await queued(smtp, crm, subject="noch einmal ohne Nummer")
        assert json.loads(await asyncio.wait_for(heard.get(), 10)) == {"tenant": "xyz",
                                                                       "id": marker["id"]}
        assert len(await history(crm)) == 1
    finally:
        await listener.close()


async def test_the_app_can_read_the_views(crm: async_sessionmaker[AsyncSession],
                                          smtp: SmtpClient) -> None:
    assert (await smtp.send(factories.mail(subject="Lead 11111"))).code == 250
    item = await queued(smtp, crm, subject="ohne Nummer")
    async with crm() as session:
        filed = (await session.execute(text(
            "SELECT tenant, company, contact, lead, project FROM crm_history"))).all()
        waiting = (await session.execute(text(
            "SELECT id FROM crm_pending WHERE tenant = :slug AND state = 'waiting' "
            "AND id > :last_seen"), {"slug": "xyz", "last_seen": 0})).scalars().all()
    assert [tuple(row) for row in filed] == [("xyz", "acme", "bob@acme.com", 11111, None)]
    assert waiting == [item["id"]]


async def test_waiting_mail_is_listed_newest_first_a_page_at_a_time(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    ids = [(await queued(smtp, crm, subject=f"ohne Nummer {i}"))["id"] for i in range(5)]
    async with crm() as session:
        queue = ReconciliationQueue(session, await tenant_scope(session, "xyz"))
        first = await queue.list_pending(limit=2)
        second = await queue.list_pending(limit=2, offset=2)
        rest = await queue.list_pending(limit=2, offset=4)
    assert [i["id"] for i in (*first, *second, *rest)] == sorted(ids, reverse=True)
    assert [i["subject"] for i in first] == ["ohne Nummer 4", "ohne Nummer 3"]


async def test_a_page_is_50_waiting_items_unless_asked(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    for i in range(51):
        assert (await smtp.send(factories.mail(subject=f"ohne Nummer {i}"))).code == 250
    async with crm() as session:
        queue = ReconciliationQueue(session, await tenant_scope(session, "xyz"))
        page = await queue.list_pending()
        rest = await queue.list_pending(offset=50)
    assert [i["subject"] for i in (page[0], page[-1], *rest)] == [
        "ohne Nummer 50", "ohne Nummer 1", "ohne Nummer 0"]
    assert len(page) == 50


async def test_expire_leaves_confirmed_and_rejected_mail_as_decided(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    confirmed = await queued(smtp, crm, subject="Angebot ohne Nummer")
    await decide(crm, "confirm", confirmed["id"], by="anna")
    rejected = await queued(smtp, crm, subject="privat")
    await decide(crm, "reject", rejected["id"], by="ben", reason="private mail")
    waiting = await queued(smtp, crm, subject="Rückfrage ohne Nummer")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    async with writing(crm) as session:
        assert await expire_pending(session, older_than=dt.timedelta(days=30), now=later) == 1
    async with crm() as session:
        queue = ReconciliationQueue(session, await tenant_scope(session, "xyz"))
        items = await queue.list_pending(include_resolved=True)
        still_waiting = await queue.list_pending()  # by default only what waits
    assert sorted((i["id"], i["state"], i["resolved_by"]) for i in items) == [
        (confirmed["id"], "confirmed", "anna"), (rejected["id"], "rejected", "ben"),
        (waiting["id"], "expired", "crm-mailer (expired)")]
    assert still_waiting == []
    assert [e["subject"] for e in await history(crm)] == ["Angebot ohne Nummer"]


def reviewed_directory() -> dict[str, Any]:
    """The directory, with every mail shown for a check (review = all)."""
    document = directory()
    document["tenants"][0]["review"] = "all"
    return document


async def test_rematch_leaves_mail_waiting_for_its_review_check_as_it_is(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    await load_directory(sessions, reviewed_directory())
    assert (await smtp.send(factories.mail(subject="Lead 11111"))).code == 250
    [entry] = await history(sessions)
    [item] = await pending(sessions)
    assert item["reasons"] == ["review"]
    report = await decide(sessions, "rematch")
    assert (report.filed, report.updated, report.unchanged) == (0, 0, 1)
    assert await pending(sessions) == [item]
    assert await history(sessions) == [entry]


async def test_rematch_counts_every_waiting_item_once_and_only_its_own_tenants(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    """Filed, updated and unchanged add up to the tenant's waiting items, whatever their
    order: mail waiting for its review check first, then mail that stays as it was, then
    mail a directory change makes certain or changes. The other tenant's waiting mail,
    which this tenant's directory would read differently, is neither counted nor touched."""
    document = directory()
    xyz = document["tenants"][0]
    xyz["review"] = "all"
    await load_directory(crm, document)
    for to in ("bob@acme.com", "carol@acme.com"):  # certain: filed, waiting for the check
        assert (await smtp.send(factories.mail(subject="Lead 11111", to=to))).code == 250
    for number, to in ((99998, "bob@acme.com"), (99999, "carol@acme.com")):
        assert (await smtp.send(factories.mail(subject=f"Lead {number}", to=to))).code == 250
    for to in ("dave@acme.com", "erin@acme.com", "frank@acme.com"):
        subject = "Lead 11111" if to == "dave@acme.com" else "Lead 11118"
        assert (await smtp.send(factories.mail(subject=subject, to=to))).code == 250
    reply = await smtp.send(
        factories.mail(sender="Xaver <x@other.example>", to="dave@acme.com",
                       subject="Lead 11111"), recipients=["crm@crm.other.example"])
    assert reply.code == 250
    before = sorted(await pending(crm), key=lambda item: item["id"])
    assert [item["reasons"] for item in before] == [
        ["review"], ["review"], ["unknown_number"], ["unknown_number"], ["no_contact"],
        ["unknown_number", "no_contact"], ["unknown_number", "no_contact"]]
    [others] = await pending(crm, "other")
    assert others["reasons"] == ["no_contact"]
    xyz["contacts"] += [{"email": f"{name}@acme.com", "company": "acme"}
                        for name in ("dave", "erin", "frank")]
    await load_directory(crm, document)
    report = await decide(crm, "rematch")
    assert (report.filed, report.updated, report.unchanged) == (1, 2, 4)
    after = sorted(await pending(crm), key=lambda item: item["id"])
    assert [item["id"] for item in after] == [item["id"] for item in before]
    assert [item["reasons"] for item in after] == [
        ["review"], ["review"], ["unknown_number"], ["unknown_number"], ["review"],
        ["unknown_number"], ["unknown_number"]]
    assert await pending(crm, "other") == [others]
    assert sorted(e["contact"] for e in await history(crm)) == [
        "bob@acme.com", "carol@acme.com", "dave@acme.com"]
    assert await history(crm, "other") == []


async def test_rematch_under_review_all_files_newly_certain_mail_and_keeps_it_for_a_check(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    document = reviewed_directory()
    await load_directory(sessions, document)
    item = await queued(smtp, sessions, subject="Lead 11111", to="dave@acme.com")
    assert item["reasons"] == ["no_contact"] and await history(sessions) == []
    document["tenants"][0]["contacts"].append({"email": "dave@acme.com", "company": "acme"})
    await load_directory(sessions, document)
    report = await decide(sessions, "rematch")
    assert (report.filed, report.updated, report.unchanged) == (1, 0, 0)
    [entry] = await history(sessions)
    assert (entry["lead"], entry["contact"], entry["filed_by"]) == (
        11111, "dave@acme.com", "crm-mailer (rematch)")
    [left] = await pending(sessions)
    assert (left["id"], left["state"], left["reasons"]) == (item["id"], "waiting", ["review"])
    assert (await decide(sessions, "show", item["id"]))["filed"]["id"] == entry["id"]
