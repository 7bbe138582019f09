"""The rules a lead keeps whoever changes it (leads.rules), through the library's calls."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer.db.engine import writing
from crm_mailer.db.models import Lead
from crm_mailer.errors import InvalidRequest
from crm_mailer.leads import LeadLibrary, tenant_scope
from crm_mailer.leads.statuses import StatusLibrary
from tests import factories
from tests.conftest import load_directory

REFUSED = "lead 11111: converted to project 20002, it must keep a won status, not "


@pytest.fixture
async def converted(sessions: async_sessionmaker[AsyncSession]
                    ) -> AsyncIterator[tuple[LeadLibrary, StatusLibrary]]:
    """The README example with lead 11111 converted (to project 20002), and a second lead."""
    await load_directory(sessions, factories.directory())
    async with writing(sessions) as session:
        tenant = await tenant_scope(session, "xyz")
        leads, statuses = LeadLibrary(session, tenant), StatusLibrary(session, tenant)
        await leads.convert_to_project(11111)
        await leads.create(name="Wartung", company="acme")
        yield leads, statuses


async def test_a_converted_lead_cannot_be_set_back_to_open_or_lost(
        converted: tuple[LeadLibrary, StatusLibrary]) -> None:
    leads, _ = converted
    with pytest.raises(InvalidRequest) as raised:
        await leads.update(11111, status="Erstkontakt", name="Renamed")
    assert str(raised.value) == REFUSED + "'Erstkontakt' (open)"
    with pytest.raises(InvalidRequest, match="^" + REFUSED + "'Verloren' \\(lost\\)$"):
        await leads.update_many([11112, 11111], status="Verloren")  # one refused: none change
    assert [(lead.name, lead.status) for lead in await leads.list_leads()] == [
        ("Website-Relaunch", "Gewonnen"), ("Wartung", "Erstkontakt")]


async def test_a_converted_lead_may_move_to_another_won_status(
        converted: tuple[LeadLibrary, StatusLibrary]) -> None:
    leads, statuses = converted
    await statuses.add("Abgerechnet", "won")
    assert (await leads.update(11111, status="Abgerechnet")).status == "Abgerechnet"
    await leads.update_many([11111, 11112], contact="bob@acme.com")  # no status: no rule


async def test_a_status_converted_leads_hold_stays_won(
        converted: tuple[LeadLibrary, StatusLibrary]) -> None:
    leads, statuses = converted
    with pytest.raises(InvalidRequest, match="^" + REFUSED + "'Gewonnen' \\(open\\)$"):
        await statuses.set_kind("Gewonnen", "open")
    with pytest.raises(InvalidRequest, match="^" + REFUSED + "'Verloren' \\(lost\\)$"):
        await statuses.delete("Gewonnen", replacement="Verloren")
    await statuses.add("Abgerechnet", "won")
    await statuses.delete("Gewonnen", replacement="Abgerechnet")
    assert (await leads.get(11111)).status == "Abgerechnet"
    await statuses.set_kind("Erstkontakt", "lost")  # no converted lead there


async def test_of_several_converted_leads_the_refusal_names_the_lowest_number(
        converted: tuple[LeadLibrary, StatusLibrary]) -> None:
    leads, statuses = converted
    await leads.convert_to_project(11112)
    await leads.update(11111, name="Relaunch")  # on PostgreSQL its row now comes last
    with pytest.raises(InvalidRequest, match="^" + REFUSED + "'Gewonnen' \\(open\\)$"):
        await statuses.set_kind("Gewonnen", "open")


async def test_of_a_converted_and_an_unconverted_lead_only_the_converted_is_refused(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    # No project before the conversion: 11111's project is the first row (id 1), the id
    # a lead without a project must never be looked up by.
    await load_directory(sessions, factories.directory(projects=[]))
    async with writing(sessions) as session:
        leads = LeadLibrary(session, await tenant_scope(session, "xyz"))
        await leads.convert_to_project(11111)
        await leads.create(name="Wartung", company="acme")
        assert await session.scalar(select(Lead.project_id).where(Lead.number == 11111)) == 1
        with pytest.raises(InvalidRequest) as raised:
            await leads.update_many([11112, 11111], status="Verloren")
        assert str(raised.value) == ("lead 11111: converted to project 1, it must keep a "
                                     "won status, not 'Verloren' (lost)")
        [updated] = await leads.update_many([11112], status="Verloren")
    assert updated.status == "Verloren"


async def test_a_contact_for_a_lead_whose_company_was_deleted_is_refused_as_such(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await load_directory(sessions, factories.directory())
    async with writing(sessions) as session:
        leads = LeadLibrary(session, await tenant_scope(session, "xyz"))
        await leads.create(name="Wartung", company="acme")
        # as the company's deletion leaves it (ON DELETE SET NULL); acme, 11111's company,
        # is the first company row (id 1), the id a lead without a company must never take
        await session.execute(update(Lead).where(Lead.number == 11112).values(company_id=None))
        assert await session.scalar(select(Lead.company_id).where(Lead.number == 11111)) == 1
        with pytest.raises(InvalidRequest) as raised:
            await leads.update_many([11112, 11111], contact="bob@acme.com")
    assert str(raised.value) == ("lead 11112: contact 'bob@acme.com' does not belong to its "
                                 "company (it has none)")
