"""Two operations on one lead, queue item or history entry at once (issue 8).

Each test holds the first operation's transaction open, starts the second on its own
connection, and on PostgreSQL waits until the second is blocked on a row lock before the
first commits: the interleaving is forced, not hoped for. SQLite serializes writers, so
there the same two calls run one after the other and must stay just as correct.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer.db import repositories
from crm_mailer.db.engine import writing
from crm_mailer.db.models import HistoryChange, HistoryEntry, Lead, PendingMatch, Tenant
from crm_mailer.directory.importer import import_tenant
from crm_mailer.directory.report import ImportReport
from crm_mailer.directory.spec import parse_directory
from crm_mailer.errors import Conflict, InvalidRequest, NotFound
from crm_mailer.leads import LeadLibrary, tenant_scope
from crm_mailer.leads.statuses import StatusLibrary
from crm_mailer.reconciliation import ReconciliationQueue
from tests import factories
from tests.conftest import SmtpClient, load_directory, until_blocked_on_a_lock
from tests.integration.test_reconciliation import directory, queued
from tests.integration.test_smtp_ingest import history, pending

Operation = Callable[[AsyncSession], Awaitable[Any]]


@pytest.fixture
async def crm(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    await load_directory(sessions, directory())
    return sessions


def leads(session: AsyncSession) -> Awaitable[LeadLibrary]:
    async def make() -> LeadLibrary:
        return LeadLibrary(session, await tenant_scope(session, "xyz"))
    return make()


async def committed_lead(sessions: async_sessionmaker[AsyncSession], number: int) -> Any:
    """The lead as committed, read in a session of its own."""
    async with sessions() as session:
        return await (await leads(session)).get(number)


def queue(session: AsyncSession) -> Awaitable[ReconciliationQueue]:
    async def make() -> ReconciliationQueue:
        return ReconciliationQueue(session, await tenant_scope(session, "xyz"))
    return make()


async def race(sessions: async_sessionmaker[AsyncSession], first: Operation,
               second: Operation) -> tuple[Any, BaseException | Any]:
    """Run `first` and keep its transaction open while `second` starts; then commit
    `first`. Returns first's result and second's result or exception."""

    async def run_second() -> Any:
        async with writing(sessions) as session:
            return await second(session)

    async with writing(sessions) as session:
        first_result = await first(session)
        racing = asyncio.create_task(run_second())
        if session.bind.dialect.name == "postgresql":
            await until_blocked_on_a_lock(sessions)
    try:
        return first_result, await racing
    except (Conflict, InvalidRequest, NotFound) as refused:
        return first_result, refused


# --- imports that race the library and the queue -----------------------------------------


def importing(tenant: dict[str, Any]) -> Operation:
    """An import of a file holding this one tenant (the other one is not in it)."""
    async def run(session: AsyncSession) -> ImportReport:
        report = ImportReport()
        for spec in parse_directory(factories.dumps({"tenants": [tenant]})):
            await import_tenant(session, spec, report)
        return report
    return run


def carol_moved_to_globex(*, with_leads: bool = True) -> Operation:
    """The import of the directory with contact carol moved from acme to globex; without
    its leads, the file names none of them (and the import changes none)."""
    tenant = directory()["tenants"][0]
    if not with_leads:
        tenant["leads"] = []
    for contact in tenant["contacts"]:
        if contact["email"] == "carol@acme.com":
            contact["company"] = "globex"
    return importing(tenant)


# --- rematch against a person's decision (race 2) ----------------------------------------


async def made_certain(crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> int:
    """A waiting mail that rematch would now file: its contact was just imported."""
    item = await queued(smtp, crm, subject="Lead 11111", to="dave@acme.com")
    assert item["reasons"] == ["no_contact"]
    document = directory()
    document["tenants"][0]["contacts"].append({"email": "dave@acme.com", "company": "acme"})
    await load_directory(crm, document)
    return int(item["id"])


async def test_a_reject_made_while_rematch_runs_stands(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    item = await made_certain(crm, smtp)

    async def reject(session: AsyncSession) -> Any:
        return await (await queue(session)).reject(item, by="anna", reason="privat")

    async def rematch(session: AsyncSession) -> Any:
        return await (await queue(session)).rematch()

    rejected, report = await race(crm, reject, rematch)
    assert rejected["state"] == "rejected"
    assert (report.filed, report.updated, report.unchanged) == (0, 0, 0)
    assert await history(crm) == []
    async with writing(crm) as session:
        shown = await (await queue(session)).show(item)
    assert (shown["state"], shown["resolved_by"], shown["note"]) == ("rejected", "anna",
                                                                     "privat")


async def test_a_reject_after_rematch_filed_the_mail_is_refused(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    item = await made_certain(crm, smtp)

    async def rematch(session: AsyncSession) -> Any:
        return await (await queue(session)).rematch()

    async def reject(session: AsyncSession) -> Any:
        return await (await queue(session)).reject(item, by="anna")

    report, refused = await race(crm, rematch, reject)
    assert report.filed == 1
    assert isinstance(refused, Conflict)
    assert f"pending mail {item} was already confirmed by crm-mailer (rematch)" in str(refused)
    [entry] = await history(crm)
    assert (entry["lead"], entry["contact"], entry["filed_by"]) == (
        11111, "dave@acme.com", "crm-mailer (rematch)")


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_rematch_in_a_session_still_holding_an_item_another_rematch_filed_leaves_it(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    """Under review = all, rematch files a mail and leaves it waiting for its check. A
    rematch in a session that read the item before must go by what was committed, not
    file the mail again from its old copy. (PostgreSQL: on SQLite a reader cannot write
    after another writer committed.)"""
    item = await queued(smtp, crm, subject="Lead 11111", to="dave@acme.com")
    document = directory()
    document["tenants"][0]["review"] = "all"
    document["tenants"][0]["contacts"].append({"email": "dave@acme.com", "company": "acme"})
    await load_directory(crm, document)
    async with writing(crm) as session:
        held = await session.get(PendingMatch, item["id"])
        assert held is not None and held.reasons == ["no_contact"]
        async with writing(crm) as other:
            first = await (await queue(other)).rematch()
        again = await (await queue(session)).rematch()
        del held
    assert (first.filed, first.updated, first.unchanged) == (1, 0, 0)
    assert (again.filed, again.updated, again.unchanged) == (0, 0, 1)
    [entry] = await history(crm)
    assert (entry["lead"], entry["contact"], entry["filed_by"]) == (
        11111, "dave@acme.com", "crm-mailer (rematch)")
    [left] = await pending(crm)
    assert (left["id"], left["reasons"]) == (item["id"], ["review"])


async def test_rematch_after_a_confirm_leaves_the_confirmed_mail_alone(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    """The confirm wins: rematch must neither file the mail twice nor fail the import."""
    item = await made_certain(crm, smtp)

    async def confirm(session: AsyncSession) -> Any:
        return await (await queue(session)).confirm(item, by="anna", lead=11111,
                                                    contact="bob@acme.com")

    async def rematch(session: AsyncSession) -> Any:
        return await (await queue(session)).rematch()

    entry, report = await race(crm, confirm, rematch)
    assert (report.filed, report.updated, report.unchanged) == (0, 0, 0)
    assert [(e["id"], e["contact"], e["filed_by"]) for e in await history(crm)] == [
        (entry["id"], "bob@acme.com", "anna")]
    assert await pending(crm) == []


# --- a lead's company changed meanwhile (race 3) ------------------------------------------


async def set_company_globex(session: AsyncSession) -> Any:
    return await (await leads(session)).set_company(11111, "globex")


async def test_a_bulk_contact_update_sees_a_company_change_made_meanwhile(
        crm: async_sessionmaker[AsyncSession]) -> None:
    async def update_contact(session: AsyncSession) -> Any:
        return await (await leads(session)).update_many([11111], contact="carol@acme.com")

    moved, refused = await race(crm, set_company_globex, update_contact)
    assert (moved.company, moved.contact) == ("globex", None)
    assert isinstance(refused, InvalidRequest)
    assert "lead 11111: contact 'carol@acme.com' does not belong to company 'globex'" in str(
        refused)
    async with writing(crm) as session:
        lead = await (await leads(session)).get(11111)
    assert (lead.company, lead.contact) == ("globex", None)


@contextlib.asynccontextmanager
async def session_holding_lead_11111(crm: async_sessionmaker[AsyncSession]
                                      ) -> AsyncIterator[AsyncSession]:
    """A session in which tenant xyz's lead 11111 was read and is still held."""
    async with writing(crm) as session:
        held = await session.scalar(select(Lead).join(Tenant).where(
            Tenant.slug == "xyz", Lead.number == 11111))
        assert held is not None and held.company_id is not None
        yield session
        del held


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_bulk_contact_update_in_a_session_still_holding_the_lead_sees_the_change(
        crm: async_sessionmaker[AsyncSession]) -> None:
    """The lead read before the company change is still in the session: the locked read
    must replace that copy with what was committed, not check against it. (PostgreSQL:
    on SQLite a reader cannot write after another writer committed.)"""
    async with session_holding_lead_11111(crm) as session:
        async with writing(crm) as other:
            await set_company_globex(other)
        with pytest.raises(InvalidRequest) as refused:
            await (await leads(session)).update_many([11111], contact="carol@acme.com")
    assert "lead 11111: contact 'carol@acme.com' does not belong to company 'globex'" in str(
        refused.value)
    lead = await committed_lead(crm, 11111)
    assert (lead.company, lead.contact) == ("globex", None)


async def test_a_company_change_after_a_bulk_contact_update_clears_that_contact(
        crm: async_sessionmaker[AsyncSession]) -> None:
    async def update_contact(session: AsyncSession) -> Any:
        return await (await leads(session)).update_many([11111], contact="carol@acme.com")

    updated, moved = await race(crm, update_contact, set_company_globex)
    assert [(v.company, v.contact) for v in updated] == [("acme", "carol@acme.com")]
    assert (moved.company, moved.contact) == ("globex", None)


async def test_a_company_change_back_with_its_contact_after_one_made_meanwhile_is_written(
        crm: async_sessionmaker[AsyncSession]) -> None:
    # The second change reads the lead as the first left it (at globex, no contact): the
    # move back to acme with bob is a change, and is written.
    async def back_to_acme_with_bob(session: AsyncSession) -> Any:
        return await (await leads(session)).set_company(11111, "acme", contact="bob@acme.com")

    moved, back = await race(crm, set_company_globex, back_to_acme_with_bob)
    assert (moved.company, moved.contact) == ("globex", None)
    assert (back.company, back.contact) == ("acme", "bob@acme.com")
    lead = await committed_lead(crm, 11111)
    assert (lead.company, lead.contact) == ("acme", "bob@acme.com")


async def test_a_company_change_with_a_contact_an_import_moves_meanwhile_is_refused(
        crm: async_sessionmaker[AsyncSession]) -> None:
    """The contact is checked as the import left it, not as it was read before."""

    async def to_acme_with_carol(session: AsyncSession) -> Any:
        return await (await leads(session)).set_company(11112, "acme",
                                                        contact="carol@acme.com")

    _, refused = await race(crm, carol_moved_to_globex(), to_acme_with_carol)
    assert isinstance(refused, InvalidRequest)
    assert str(refused) == ("lead 11112: contact 'carol@acme.com' does not belong to "
                            "company 'acme'")
    lead = await committed_lead(crm, 11112)
    assert (lead.company, lead.contact) == ("globex", None)


async def test_a_confirm_onto_a_lead_that_moved_meanwhile_is_refused(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    """What the person chose is checked against the lead as it is when the mail is filed."""
    item = await queued(smtp, crm, subject="Angebot ohne Nummer", to="bob@acme.com")

    async def confirm(session: AsyncSession) -> Any:
        return await (await queue(session)).confirm(int(item["id"]), by="anna", lead=11111,
                                                    contact="bob@acme.com")

    moved, refused = await race(crm, set_company_globex, confirm)
    assert moved.company == "globex"
    assert isinstance(refused, InvalidRequest)
    assert "contact 'bob@acme.com' does not belong to company 'globex'" in str(refused)
    assert await history(crm) == []
    assert [p["id"] for p in await pending(crm)] == [item["id"]]  # still waiting


async def test_a_confirm_onto_a_project_moved_to_another_company_meanwhile_follows_it(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    """The confirm waits for the import's change of the project, then files by it."""
    # To no known contact: nothing the confirm locks before the project is the import's.
    item = await queued(smtp, crm, subject="Angebot ohne Nummer", to="dave@acme.com")
    tenant = directory()["tenants"][0]
    [project] = tenant["projects"]
    project["company"] = "globex"

    async def confirm(session: AsyncSession) -> Any:
        return await (await queue(session)).confirm(int(item["id"]), by="anna", project=20001)

    _, entry = await race(crm, importing(tenant), confirm)
    assert (entry["company"], entry["project"], entry["contact"]) == ("globex", 20001, None)


async def test_a_confirm_waits_for_an_import_moving_a_suggested_contact_away(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    """The suggested contact is checked as the import left it: no longer at acme."""
    item = await queued(smtp, crm, subject="Angebot ohne Nummer", to="carol@acme.com")

    async def confirm(session: AsyncSession) -> Any:
        return await (await queue(session)).confirm(int(item["id"]), by="anna", lead=11111)

    _, entry = await race(crm, carol_moved_to_globex(), confirm)
    assert (entry["company"], entry["lead"], entry["contact"]) == ("acme", 11111, None)


async def test_a_confirm_onto_a_contact_an_import_moves_meanwhile_is_refused(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    item = await queued(smtp, crm, subject="Angebot ohne Nummer", to="carol@acme.com")

    async def confirm(session: AsyncSession) -> Any:
        return await (await queue(session)).confirm(int(item["id"]), by="anna", lead=11111,
                                                    contact="carol@acme.com")

    _, refused = await race(crm, carol_moved_to_globex(), confirm)
    assert isinstance(refused, InvalidRequest)
    assert str(refused) == "contact 'carol@acme.com' does not belong to company 'acme'"
    assert await history(crm) == []


async def test_two_moves_of_one_entry_keep_an_unbroken_audit_trail(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    assert (await smtp.send(factories.mail(subject="Lead 11111"))).code == 250
    [entry] = await history(crm)

    async def to_carol(session: AsyncSession) -> Any:
        return await (await queue(session)).move(entry["id"], by="anna",
                                                 contact="carol@acme.com")

    async def to_project(session: AsyncSession) -> Any:
        return await (await queue(session)).move(entry["id"], by="ben", project=20001)

    first, second = await race(crm, to_carol, to_project)
    assert (first["contact"], first["lead"]) == ("carol@acme.com", 11111)
    assert (second["contact"], second["lead"], second["project"]) == (
        "carol@acme.com", None, 20001)
    async with crm() as session:
        changes = (await session.scalars(select(HistoryChange).where(
            HistoryChange.history_entry_id == entry["id"]).order_by(HistoryChange.id))).all()
    assert [c.changed_by for c in changes] == ["anna", "ben"]
    assert changes[1].before == changes[0].after  # ben's change starts where anna's ended


@pytest.mark.parametrize("call", ["move", "confirm"])
async def test_a_correction_in_a_session_still_holding_the_entry_starts_from_what_is_committed(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient, call: str) -> None:
    # The app's session holds the entry, then someone moves it; the app's correction back
    # (a move, or a confirm of the mail filed under review = all) must start from the entry
    # as committed, not from the copy its session still holds.
    document = directory()
    document["tenants"][0]["review"] = "all"
    await load_directory(sessions, document)
    assert (await smtp.send(factories.mail(subject="Lead 11111"))).code == 250
    [entry], [item] = await history(sessions), await pending(sessions)
    async with sessions() as app:
        async with app.begin():
            tenant = await tenant_scope(app, "xyz")
            held = await app.get(HistoryEntry, entry["id"])
        async with writing(sessions) as other:
            await (await queue(other)).move(entry["id"], by="ben", project=20001)
        async with app.begin():
            corrections = ReconciliationQueue(app, tenant)
            back = await (corrections.move(entry["id"], by="anna", lead=11111) if call == "move"
                          else corrections.confirm(item["id"], by="anna", lead=11111))
    assert (back["lead"], back["project"]) == (11111, None) and held is not None
    assert [(e["lead"], e["project"]) for e in await history(sessions)] == [(11111, None)]


# --- a lead converted or deleted while it changes -----------------------------------------


async def test_a_lead_set_to_lost_meanwhile_is_not_converted(
        crm: async_sessionmaker[AsyncSession]) -> None:
    """The convert reads the lead under its lock: as the bulk update left it, lost."""
    async def to_lost(session: AsyncSession) -> Any:
        return await (await leads(session)).update_many([11111], status="Verloren")

    async def convert(session: AsyncSession) -> Any:
        return await (await leads(session)).convert_to_project(11111)

    _, refused = await race(crm, to_lost, convert)
    assert isinstance(refused, InvalidRequest)
    assert str(refused) == ("lead 11111 is lost ('Verloren'): a lost lead does not become "
                            "a project")
    lead = await committed_lead(crm, 11111)
    assert (lead.status, lead.project) == ("Verloren", None)


async def test_a_lead_moved_to_another_company_meanwhile_is_converted_at_that_company(
        crm: async_sessionmaker[AsyncSession]) -> None:
    async def convert(session: AsyncSession) -> Any:
        return await (await leads(session)).convert_to_project(11111)

    _, project = await race(crm, set_company_globex, convert)
    assert (project.company, project.contact) == ("globex", None)


async def test_a_lead_deleted_while_mail_is_filed_on_it_is_refused(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    """Mail filed on a lead is never detached by a delete that could not see it yet: the
    delete waits for the filing (its foreign key holds the lead), then counts it."""
    item = await queued(smtp, crm, subject="Angebot ohne Nummer", to="bob@acme.com")

    async def confirm(session: AsyncSession) -> Any:
        return await (await queue(session)).confirm(int(item["id"]), by="anna", lead=11111,
                                                    contact="bob@acme.com")

    async def delete(session: AsyncSession) -> Any:
        return await (await leads(session)).delete(11111)

    entry, refused = await race(crm, confirm, delete)
    assert isinstance(refused, Conflict)
    assert str(refused) == ("lead 11111 has 1 contact-history entry: detach them (they stay "
                            "with the company) or keep the lead")
    assert [(e["id"], e["lead"]) for e in await history(crm)] == [(entry["id"], 11111)]


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_lead_deleted_while_mail_arriving_is_filed_on_it_is_refused(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon files mail without locking the lead: only the entry's foreign key holds
    it (FOR KEY SHARE). The delete's own lock must wait for that, or it counts no entry,
    and the entry committed meanwhile loses its lead to ON DELETE SET NULL unseen.
    (SQLite serializes writers: there the two run one after the other, as tested in
    test_leads.)"""
    filed, release = asyncio.Event(), asyncio.Event()
    file_decision = repositories.file_decision

    async def file_and_hold(*args: Any, **kwargs: Any) -> Any:
        result = await file_decision(*args, **kwargs)
        filed.set()
        await release.wait()  # the daemon's transaction stays open, its entry written
        return result

    monkeypatch.setattr(repositories, "file_decision", file_and_hold)
    sending = asyncio.create_task(smtp.send(factories.mail(subject="Lead 11111")))
    await asyncio.wait_for(filed.wait(), 10)

    async def delete() -> Any:
        async with writing(crm) as session:
            return await (await leads(session)).delete(11111)

    deleting = asyncio.create_task(delete())
    await until_blocked_on_a_lock(crm)
    release.set()
    assert (await sending).code == 250
    with pytest.raises(Conflict, match=r"^lead 11111 has 1 contact-history entry: "):
        await deleting
    assert [e["lead"] for e in await history(crm)] == [11111]


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_mail_matched_to_a_lead_deleted_meanwhile_is_matched_again(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    """The daemon matched the mail to 11111 before the delete committed; its entry's
    foreign key then finds the lead gone. The mail is matched again against the directory
    as it now is, as if it had come a moment later, not kept as unprocessable."""
    async with writing(crm) as session:
        await (await leads(session)).delete(11111)
        sending = asyncio.create_task(smtp.send(factories.mail(subject="Lead 11111")))
        await until_blocked_on_a_lock(crm)
    assert (await sending).code == 250
    later = await smtp.send(factories.mail(subject="Lead 11111",
                                           message_id="<later@xyz.de>"))
    assert later.code == 250
    assert await history(crm) == []
    assert [p["reasons"] for p in await pending(crm)] == [["unknown_number"]] * 2


# --- a status deleted while leads are set to it -------------------------------------------


async def test_a_status_deleted_while_a_lead_is_set_to_it_counts_that_lead(
        crm: async_sessionmaker[AsyncSession]) -> None:
    async def to_won(session: AsyncSession) -> Any:
        return await (await leads(session)).update_many([11111], status="Gewonnen")

    async def delete_won(session: AsyncSession) -> Any:
        return await StatusLibrary(session, await tenant_scope(session, "xyz")).delete(
            "Gewonnen")

    updated, refused = await race(crm, to_won, delete_won)
    assert [v.status for v in updated] == ["Gewonnen"]
    assert isinstance(refused, Conflict)
    assert "status 'Gewonnen' is used by 1 lead:" in str(refused)


async def test_a_status_made_open_while_a_lead_is_converted_into_it_is_refused(
        crm: async_sessionmaker[AsyncSession]) -> None:
    # The kind change waits for the convert, then sees the converted lead in the status.
    async def convert(session: AsyncSession) -> Any:
        return await (await leads(session)).convert_to_project(11111)

    async def make_open(session: AsyncSession) -> Any:
        return await StatusLibrary(session, await tenant_scope(session, "xyz")).set_kind(
            "Gewonnen", "open")

    converted, refused = await race(crm, convert, make_open)
    assert converted.lead == 11111
    assert isinstance(refused, InvalidRequest) and str(refused).startswith("lead 11111:")
    lead = await committed_lead(crm, 11111)
    async with crm() as session:
        kinds = {v.name: v.kind for v in await StatusLibrary(
            session, await tenant_scope(session, "xyz")).list_statuses()}
    assert (lead.status, kinds["Gewonnen"]) == ("Gewonnen", "won")


async def test_a_lead_set_to_a_status_deleted_meanwhile_is_refused(
        crm: async_sessionmaker[AsyncSession]) -> None:
    async def delete_won(session: AsyncSession) -> Any:
        return await StatusLibrary(session, await tenant_scope(session, "xyz")).delete(
            "Gewonnen")

    async def to_won(session: AsyncSession) -> Any:
        return await (await leads(session)).update_many([11111], status="Gewonnen")

    remaining, refused = await race(crm, delete_won, to_won)
    assert [s.name for s in remaining] == ["Erstkontakt", "Verloren"]
    assert isinstance(refused, NotFound)
    assert "no lead status 'Gewonnen' in tenant 'xyz'" in str(refused)


# --- an import while the library creates a lead -------------------------------------------


def importing_lead_11113() -> Operation:
    tenant = directory()["tenants"][0]
    tenant["leads"].append({"number": 11113, "name": "Aus der Datei", "company": "acme"})
    return importing(tenant)


async def create_lead(session: AsyncSession) -> Any:
    return await (await leads(session)).create(name="Aus der Bibliothek", company="acme")


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_lead_created_while_another_tenant_imports_does_not_wait_for_it(
        crm: async_sessionmaker[AsyncSession]) -> None:
    """The tenant's lock is its own row: another tenant's import, holding that tenant's
    row, holds up no one here. (SQLite serializes all writers: PostgreSQL only.)"""
    other = factories.second_tenant()
    other["leads"].append({"number": 11112, "name": "Neu", "company": "acme"})

    async def create_here() -> Any:
        async with writing(crm) as session:
            return await create_lead(session)

    async with writing(crm) as session:
        await importing(other)(session)  # its transaction stays open meanwhile
        created = await asyncio.wait_for(create_here(), timeout=10)
    assert created.number == 11113


async def test_a_lead_created_during_an_import_takes_the_next_free_number(
        crm: async_sessionmaker[AsyncSession]) -> None:
    _, created = await race(crm, importing_lead_11113(), create_lead)
    assert (created.number, created.name) == (11114, "Aus der Bibliothek")


async def test_an_import_after_the_library_took_its_number_reports_the_conflict(
        crm: async_sessionmaker[AsyncSession]) -> None:
    created, report = await race(crm, create_lead, importing_lead_11113())
    assert created.number == 11113
    assert [(c.record, c.field) for c in report.conflicts] == [("lead 11113", "name")]
    async with writing(crm) as session:
        lead = await (await leads(session)).get(11113)
    assert lead.name == "Aus der Bibliothek"  # the CRM's value is kept


async def test_a_status_deleted_while_a_lead_is_created_in_it_counts_that_lead(
        crm: async_sessionmaker[AsyncSession]) -> None:
    async def create_won(session: AsyncSession) -> Any:
        return await (await leads(session)).create(name="Neu", company="acme",
                                                   status="Gewonnen")

    async def delete_won(session: AsyncSession) -> Any:
        return await StatusLibrary(session, await tenant_scope(session, "xyz")).delete(
            "Gewonnen")

    created, refused = await race(crm, create_won, delete_won)
    assert created.status == "Gewonnen"
    assert isinstance(refused, Conflict)
    assert "status 'Gewonnen' is used by 1 lead:" in str(refused)
    _, refused_later = await race(crm, delete_won_replacing(), create_won)
    assert isinstance(refused_later, NotFound)


def delete_won_replacing() -> Operation:
    async def run(session: AsyncSession) -> Any:
        return await StatusLibrary(session, await tenant_scope(session, "xyz")).delete(
            "Gewonnen", replacement="Erstkontakt")
    return run


async def test_two_people_adding_one_status_at_once_get_one_status(
        crm: async_sessionmaker[AsyncSession]) -> None:
    async def add(session: AsyncSession) -> Any:
        return await StatusLibrary(session, await tenant_scope(session, "xyz")).add(
            "Angebot", "open", position=2)

    added, refused = await race(crm, add, add)
    assert [s.name for s in added] == ["Erstkontakt", "Angebot", "Gewonnen", "Verloren"]
    assert isinstance(refused, Conflict)
    assert "status 'Angebot' exists already" in str(refused)
