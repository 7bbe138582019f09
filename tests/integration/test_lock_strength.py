"""Locks no stronger and no weaker than the rule needs (scope.py, RowLock; PostgreSQL).

A row a change relies on is locked for share, so that two changes relying on it (two
bulk updates naming one contact or status) go on side by side while nobody changes it
underneath them. A row being changed is locked FOR NO KEY UPDATE, so that mail filed on
it meanwhile (whose foreign key takes a key-share lock) is not held up. Each test holds
the first operation's transaction open and checks whether the second waits for a lock.
SQLite serializes every writer, so there is nothing of this to test there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer.db.engine import writing
from crm_mailer.db.models import StatusKind
from crm_mailer.errors import DirectoryImportError
from crm_mailer.leads import tenant_scope
from crm_mailer.leads.statuses import StatusLibrary
from tests import factories
from tests.conftest import SmtpClient, load_directory, waiting_for_a_lock
from tests.integration.test_races import Operation, carol_moved_to_globex, importing, leads, race
from tests.integration.test_reconciliation import directory
from tests.integration.test_smtp_ingest import history

pytestmark = [pytest.mark.postgres,
              pytest.mark.parametrize("backend", ["postgresql"], indirect=False)]


@pytest.fixture
async def crm(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    document = directory()
    document["tenants"][0]["leads"].append({"number": 11113, "name": "Zweites Projekt",
                                            "company": "acme"})
    await load_directory(sessions, document)
    return sessions


async def beside(sessions: async_sessionmaker[AsyncSession], first: Operation,
                 second: Callable[[], Awaitable[Any]]) -> Any:
    """Run `second` while `first`'s transaction is open; fail if it waits for a lock."""
    async with writing(sessions) as session:
        await first(session)
        running = asyncio.create_task(second())
        try:
            for _ in range(1000):
                if running.done():
                    return running.result()
                if await waiting_for_a_lock(sessions):
                    raise AssertionError("the second operation waits for the first's lock")
                await asyncio.sleep(0.01)
            raise AssertionError("the second operation did not finish within 10 s")
        finally:
            running.cancel()


def in_own_transaction(sessions: async_sessionmaker[AsyncSession],
                       operation: Operation) -> Callable[[], Awaitable[Any]]:
    async def run() -> Any:
        async with writing(sessions) as session:
            return await operation(session)
    return run


def bulk(numbers: list[int], **changes: Any) -> Operation:
    async def run(session: AsyncSession) -> Any:
        return await (await leads(session)).update_many(numbers, **changes)
    return run


async def test_mail_filed_on_a_lead_a_bulk_update_holds_is_not_held_up(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    reply = await beside(crm, bulk([11111], status="Gewonnen"),
                         lambda: smtp.send(factories.mail(subject="XYZ Lead 11111")))
    assert reply.code == 250
    assert [entry["lead"] for entry in await history(crm)] == [11111]


def converting(session: AsyncSession) -> Awaitable[Any]:
    async def run() -> Any:
        return await (await leads(session)).convert_to_project(11111)
    return run()


def creating(session: AsyncSession) -> Awaitable[Any]:
    async def run() -> Any:
        return await (await leads(session)).create(name="Neu", company="acme")
    return run()


def adding_a_status(session: AsyncSession) -> Awaitable[Any]:
    async def run() -> Any:
        return await StatusLibrary(session, await tenant_scope(session, "xyz")).add(
            "Verhandlung", StatusKind.OPEN)
    return run()


@pytest.mark.parametrize("change", [
    converting, creating, adding_a_status, importing(directory()["tenants"][0]),
    carol_moved_to_globex()], ids=["convert", "create", "status", "import", "import moving"])
async def test_mail_is_not_held_up_by_a_change_of_its_tenants_directory(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient, change: Operation) -> None:
    """The tenant's row, locked to serialize numbering, the status list and imports, and
    every lead and contact an import holds are locked FOR NO KEY UPDATE: mail, whose
    foreign keys hold them FOR KEY SHARE, is filed meanwhile. An import can hold its
    locks for a minute; FOR UPDATE would stop the tenant's mail as long."""
    reply = await beside(crm, change,
                         lambda: smtp.send(factories.mail(subject="XYZ Lead 11111")))
    assert reply.code == 250
    assert [entry["lead"] for entry in await history(crm)] == [11111]


async def test_a_lead_set_to_the_won_status_a_convert_takes_goes_on_beside_it(
        crm: async_sessionmaker[AsyncSession]) -> None:
    """The convert relies on the won status it sets (share), as the bulk update does."""
    updated = await beside(crm, converting,
                           in_own_transaction(crm, bulk([11113], status="Gewonnen")))
    assert [(lead.number, lead.status) for lead in updated] == [(11113, "Gewonnen")]


async def test_two_bulk_updates_naming_one_contact_go_on_side_by_side(
        crm: async_sessionmaker[AsyncSession]) -> None:
    updated = await beside(crm, bulk([11111], contact="carol@acme.com"),
                           in_own_transaction(crm, bulk([11113], contact="carol@acme.com")))
    assert [(lead.number, lead.contact) for lead in updated] == [(11113, "carol@acme.com")]


async def test_two_bulk_updates_to_one_status_go_on_side_by_side(
        crm: async_sessionmaker[AsyncSession]) -> None:
    updated = await beside(crm, bulk([11111], status="Verloren"),
                           in_own_transaction(crm, bulk([11113], status="Verloren")))
    assert [(lead.number, lead.status) for lead in updated] == [(11113, "Verloren")]


@pytest.mark.parametrize("named", [None, "Erstkontakt"], ids=["first open", "named"])
async def test_a_lead_created_in_a_status_while_a_bulk_update_sets_it(
        crm: async_sessionmaker[AsyncSession], named: str | None) -> None:
    """Without a status, create takes the first open one; either way the status is a row
    it relies on, locked for share."""
    # 11111 is in Erstkontakt already: setting it again still locks the status for share
    async def create(session: AsyncSession) -> Any:
        return await (await leads(session)).create(name="Neu", company="acme", status=named)

    created = await beside(crm, bulk([11111], status="Erstkontakt"),
                           in_own_transaction(crm, create))
    assert (created.status, created.company) == ("Erstkontakt", "acme")


@pytest.mark.parametrize("names_the_lead", [True, False])
async def test_a_contact_a_bulk_update_relies_on_is_not_moved_underneath_it(
        crm: async_sessionmaker[AsyncSession], names_the_lead: bool) -> None:
    # The import moving carol to globex waits for the bulk update, then sees lead 11111
    # (acme) with carol as its contact and refuses: the two never end half applied. An
    # import that names the lead waits for the lead's lock too; one that does not, only
    # for carol's.
    move = carol_moved_to_globex(with_leads=names_the_lead)
    with pytest.raises(DirectoryImportError, match="lead 11111") as refused:
        await race(crm, bulk([11111], contact="carol@acme.com"), move)
    assert "carol@acme.com" in str(refused.value)
    async with crm() as session:
        lead = await (await leads(session)).get(11111)
        [carol_company] = (await session.execute(text(
            "SELECT c.key FROM contacts p JOIN companies c ON c.id = p.company_id "
            "WHERE p.email = 'carol@acme.com' AND p.tenant_id = c.tenant_id "
            "AND c.key IN ('acme', 'globex')"))).one()
    assert (lead.company, lead.contact, carol_company) == ("acme", "carol@acme.com", "acme")
