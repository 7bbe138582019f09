"""The lead library through its API, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer.db.engine import writing
from crm_mailer.db.models import Project, ProjectTask, StatusKind
from crm_mailer.errors import Conflict, InvalidRequest, NotFound
from crm_mailer.leads import LeadLibrary, pipeline_sums, tenant_scope
from crm_mailer.leads.library import SalesTask
from crm_mailer.leads.statuses import StatusLibrary
from crm_mailer.views import list_history
from tests import factories
from tests.conftest import SmtpClient, load_directory, until_blocked_on_a_lock


def directory() -> dict[str, Any]:
    document = factories.directory(
        lead_statuses=[{"name": "Erstkontakt", "kind": "open"},
                       {"name": "Angebot", "kind": "open"},
                       {"name": "Gewonnen", "kind": "won"},
                       {"name": "Verloren", "kind": "lost"}],
        sales_actions=["Messe 2026", "Mailing"],
        companies=[{"key": "acme", "name": "ACME AG", "domains": ["acme.com"]},
                   {"key": "globex", "name": "Globex Ltd", "domains": ["globex.example"]}],
        contacts=[{"email": "bob@acme.com", "company": "acme"},
                  {"email": "carol@acme.com", "company": "acme"},
                  {"email": "hank@globex.example", "company": "globex"}],
        leads=[
            {"number": 11111, "name": "Website-Relaunch", "company": "acme",
             "contact": "bob@acme.com", "status": "Erstkontakt", "sales_action": "Messe 2026",
             "planned_revenues": [{"month": "2026-12", "amount": "12000.00"}]},
            {"number": 11112, "name": "Wartung", "company": "acme", "status": "Angebot",
             "planned_revenues": [{"month": "2026-11", "amount": "0.10"},
                                  {"month": "2027-01", "amount": "0.20"}]},
            {"number": 11113, "name": "UK", "company": "globex", "contact": "hank@globex.example",
             "status": "Gewonnen", "planned_revenues": [{"month": "2026-12", "amount": "999.99"}]},
            {"number": 11114, "name": "Verloren", "company": "globex", "status": "Verloren",
             "sales_action": "Mailing",
             "planned_revenues": [{"month": "2026-10", "amount": "100.01"}]},
        ],
    )
    other = factories.second_tenant()
    other["leads"] = [{"number": 77777, "name": "other's", "company": "acme"}]
    document["tenants"].append(other)
    return document


@pytest.fixture
async def crm(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    await load_directory(sessions, directory())
    return sessions


@pytest.fixture
async def leads(crm: async_sessionmaker[AsyncSession]) -> AsyncIterator[LeadLibrary]:
    """The library on one session; the test's changes are committed at the end."""
    async with writing(crm) as session:
        yield LeadLibrary(session, await tenant_scope(session, "xyz"))


async def test_create_takes_the_next_number_and_the_first_open_status(
        leads: LeadLibrary) -> None:
    lead = await leads.create(name="Neu", company="acme", contact="carol@acme.com")
    assert (lead.number, lead.status, lead.status_kind) == (11115, "Erstkontakt",
                                                            StatusKind.OPEN)
    assert (lead.company, lead.contact, lead.expected_volume) == ("acme", "carol@acme.com",
                                                                  Decimal("0.00"))
    second = await leads.create(name="Noch einer", company="globex", status="Angebot",
                                sales_action="Mailing")
    assert (second.number, second.status, second.sales_action) == (11116, "Angebot", "Mailing")


async def test_create_refuses_a_contact_of_another_company(leads: LeadLibrary) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await leads.create(name="x", company="acme", contact="hank@globex.example")
    assert str(refused.value) == \
        "new lead: contact 'hank@globex.example' does not belong to company 'acme'"
    with pytest.raises(NotFound, match="no company 'initech'"):
        await leads.create(name="x", company="initech")
    assert [lead.number for lead in await leads.list_leads()] == [11111, 11112, 11113, 11114]


async def test_create_without_a_status_takes_this_tenants_first_open_one(
        leads: LeadLibrary) -> None:
    # The won and lost statuses come first now, and the other tenant's open "Neu" is at
    # position 0 of its own list: only this tenant's open statuses count.
    await StatusLibrary(leads.session, leads.tenant).reorder(
        ["Gewonnen", "Verloren", "Angebot", "Erstkontakt"])
    lead = await leads.create(name="Neu", company="acme")
    assert (lead.status, lead.status_kind) == ("Angebot", StatusKind.OPEN)


async def test_create_without_a_status_is_refused_when_the_tenant_has_no_open_one(
        leads: LeadLibrary) -> None:
    statuses = StatusLibrary(leads.session, leads.tenant)
    for name in ("Erstkontakt", "Angebot"):
        await statuses.set_kind(name, "lost")
    with pytest.raises(InvalidRequest, match=r"^tenant 'xyz' has no open lead status$"):
        await leads.create(name="Neu", company="acme")


@pytest.mark.parametrize("name", ["", "  \t"])
async def test_create_refuses_a_blank_name(leads: LeadLibrary, name: str) -> None:
    with pytest.raises(InvalidRequest, match=r"^a lead needs a name$"):
        await leads.create(name=name, company="acme")


async def test_concurrent_creates_never_share_a_number(
        crm: async_sessionmaker[AsyncSession]) -> None:
    async def create(index: int) -> int:
        async with writing(crm) as session:
            library = LeadLibrary(session, await tenant_scope(session, "xyz"))
            return (await library.create(name=f"parallel {index}", company="acme")).number

    numbers = await asyncio.gather(*(create(i) for i in range(12)))
    assert sorted(numbers) == list(range(11115, 11127))


async def test_list_filters_by_status_company_action_and_kind(leads: LeadLibrary) -> None:
    async def numbers(**filters: Any) -> list[int]:
        return [lead.number for lead in await leads.list_leads(**filters)]

    assert await numbers(status="Angebot") == [11112]
    assert await numbers(company="globex") == [11113, 11114]
    assert await numbers(sales_action="Mailing") == [11114]
    assert await numbers(kinds=[StatusKind.OPEN]) == [11111, 11112]
    assert await numbers(kinds=[StatusKind.WON, StatusKind.LOST]) == [11113, 11114]


async def test_lead_json_has_the_documented_fields(leads: LeadLibrary) -> None:
    assert (await leads.get(11111)).as_json() == {
        "number": 11111, "name": "Website-Relaunch", "company": "acme",
        "contact": "bob@acme.com", "status": "Erstkontakt", "status_kind": "open",
        "sales_action": "Messe 2026",
        "planned_revenues": [{"month": "2026-12", "amount": "12000.00"}],
        "expected_volume": "12000.00", "project": None}


async def test_another_tenants_numbers_and_keys_are_not_found(leads: LeadLibrary) -> None:
    with pytest.raises(NotFound, match="no lead 77777 in tenant 'xyz'"):
        await leads.get(77777)
    with pytest.raises(NotFound):
        await leads.update_many([11111, 77777], status="Angebot")
    assert (await leads.get(11111)).status == "Erstkontakt"


async def test_bulk_update_sets_contact_action_and_status_on_all(leads: LeadLibrary) -> None:
    changed = await leads.update_many([11111, 11112], contact="carol@acme.com",
                                      sales_action="Mailing", status="Angebot")
    assert [(c.contact, c.sales_action, c.status) for c in changed] == \
        [("carol@acme.com", "Mailing", "Angebot")] * 2
    cleared = await leads.update_many([11111, 11112], contact=None, sales_action=None)
    assert [(c.contact, c.sales_action, c.status) for c in cleared] == [(None, None, "Angebot")] * 2


@pytest.mark.parametrize("change, error", [
    ({"contact": "bob@acme.com"}, "lead 11113: contact 'bob@acme.com' does not belong to "
                                  "company 'globex'"),
    ({"status": "Unbekannt", "contact": "bob@acme.com"}, "no lead status 'Unbekannt'"),
    ({"sales_action": "Nope"}, "no sales action 'Nope'"),
])
async def test_bulk_update_with_one_bad_lead_changes_nothing(
        crm: async_sessionmaker[AsyncSession], change: dict[str, Any], error: str) -> None:
    async with writing(crm) as session:
        library = LeadLibrary(session, await tenant_scope(session, "xyz"))
        before = [lead.as_json() for lead in await library.list_leads()]
        with pytest.raises((InvalidRequest, NotFound)) as raised:
            await library.update_many([11111, 11112, 11113], **{"status": "Angebot", **change})
        assert error in str(raised.value)
        # The caller may even go on and commit: the failed call left nothing behind.
    async with writing(crm) as session:
        library = LeadLibrary(session, await tenant_scope(session, "xyz"))
        assert [lead.as_json() for lead in await library.list_leads()] == before


async def test_changing_the_company_clears_the_contact_unless_one_is_given(
        leads: LeadLibrary) -> None:
    moved = await leads.set_company(11111, "globex")
    assert (moved.company, moved.contact) == ("globex", None)
    moved = await leads.set_company(11111, "acme", contact="carol@acme.com")
    assert (moved.company, moved.contact) == ("acme", "carol@acme.com")
    with pytest.raises(InvalidRequest, match="does not belong to company 'globex'"):
        await leads.set_company(11111, "globex", contact="bob@acme.com")
    assert (await leads.get(11111)).company == "acme"


async def test_setting_the_leads_own_company_again_keeps_its_contact(
        leads: LeadLibrary) -> None:
    before = await leads.get(11111)
    assert before.contact is not None
    same = await leads.set_company(11111, before.company or "")
    assert (same.company, same.contact) == (before.company, before.contact)
    replaced = await leads.set_company(11111, before.company or "", contact="carol@acme.com")
    assert replaced.contact == "carol@acme.com"


async def test_planned_revenues_set_change_and_remove_exactly(leads: LeadLibrary) -> None:
    lead = await leads.set_revenue(11112, "2027-02", "1234.50")
    assert lead.expected_volume == Decimal("1234.80")
    lead = await leads.set_revenue(11112, "2027-02", Decimal("0.05"))
    assert lead.expected_volume == Decimal("0.35")
    lead = await leads.set_revenue(11112, "2026-11", "0")
    assert [(m.isoformat(), a) for m, a in lead.planned_revenues] == [
        ("2027-01-01", Decimal("0.20")), ("2027-02-01", Decimal("0.05"))]
    for month, amount in (("2027-13", "1"), ("2027-01", "1.001"), ("2027-01", "-5"),
                          ("2027-01", "abc")):
        with pytest.raises(InvalidRequest):
            await leads.set_revenue(11112, month, amount)


async def test_a_revenue_change_touches_only_that_leads_month(leads: LeadLibrary) -> None:
    # 11111 and 11113 both plan revenue for 2026-12.
    lead = await leads.set_revenue(11113, "2026-12", "1.00")
    assert lead.expected_volume == Decimal("1.00")
    assert (await leads.get(11111)).expected_volume == Decimal("12000.00")
    await leads.set_revenue(11113, "2026-12", "0")
    assert (await leads.get(11111)).expected_volume == Decimal("12000.00")


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_two_revenue_changes_of_one_month_at_once_leave_the_later_one(
        crm: async_sessionmaker[AsyncSession]) -> None:
    """The later change waits for the lead's row lock, then changes the month the earlier
    one added (without the lock it would insert it a second time and fail)."""
    async def set_revenue(amount: str) -> Any:
        async with writing(crm) as session:
            library = LeadLibrary(session, await tenant_scope(session, "xyz"))
            return await library.set_revenue(11112, "2027-03", amount)

    async with writing(crm) as session:
        await LeadLibrary(session, await tenant_scope(session, "xyz")).set_revenue(
            11112, "2027-03", "100.00")
        racing = asyncio.create_task(set_revenue("200.00"))
        await until_blocked_on_a_lock(crm)
    later = await racing
    assert ("2027-03-01", Decimal("200.00")) in [(m.isoformat(), a)
                                                 for m, a in later.planned_revenues]


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_lead_read_again_shows_what_another_session_committed_meanwhile(
        crm: async_sessionmaker[AsyncSession]) -> None:
    """The session keeps the lead it read; reading it again must not show that stale copy."""
    async with writing(crm) as session:
        library = LeadLibrary(session, await tenant_scope(session, "xyz"))
        before = await library.get(11112)
        async with writing(crm) as other:
            changer = LeadLibrary(other, await tenant_scope(other, "xyz"))
            await changer.update(11112, name="Renamed")
            await changer.set_revenue(11112, "2027-04", "7.00")
        again = await library.get(11112)
    assert (before.name, again.name) == ("Wartung", "Renamed")
    assert again.planned_revenues == (*before.planned_revenues,
                                      (dt.date(2027, 4, 1), Decimal("7.00")))


@pytest.mark.parametrize("include_won, include_lost, expected", [
    (False, False, [("Erstkontakt", 1, "12000.00"), ("Angebot", 1, "0.30")]),
    (True, False, [("Erstkontakt", 1, "12000.00"), ("Angebot", 1, "0.30"),
                   ("Gewonnen", 1, "999.99")]),
    (False, True, [("Erstkontakt", 1, "12000.00"), ("Angebot", 1, "0.30"),
                   ("Verloren", 1, "100.01")]),
    (True, True, [("Erstkontakt", 1, "12000.00"), ("Angebot", 1, "0.30"),
                  ("Gewonnen", 1, "999.99"), ("Verloren", 1, "100.01")]),
])
async def test_pipeline_sums_are_exact_for_every_checkbox_combination(
        leads: LeadLibrary, include_won: bool, include_lost: bool,
        expected: list[tuple[str, int, str]]) -> None:
    rows = await pipeline_sums(leads.session, leads.tenant, include_won=include_won,
                               include_lost=include_lost)
    assert [(r.status, r.leads, f"{r.expected_volume:.2f}") for r in rows] == expected
    assert all(isinstance(r.expected_volume, Decimal) for r in rows)


async def test_pipeline_sums_many_cents_add_up_exactly(leads: LeadLibrary) -> None:
    for month in range(1, 13):  # twelve times 0.10: inexact in binary floating point
        await leads.set_revenue(11112, f"2028-{month:02d}", "0.10")
    lead = await leads.create(name="Groß", company="acme")
    await leads.set_revenue(lead.number, "2027-05", "999999999999.99")
    await leads.set_revenue(lead.number, "2027-06", "0.01")
    [first, second] = await pipeline_sums(leads.session, leads.tenant)
    assert first.expected_volume == Decimal("12000.00") + Decimal("1000000000000.00")
    assert (second.leads, second.expected_volume) == (1, Decimal("1.50"))


async def test_pipeline_shows_statuses_without_leads_as_zero_and_filters(
        leads: LeadLibrary) -> None:
    statuses = StatusLibrary(leads.session, leads.tenant)
    await statuses.add("Verhandlung", "open", position=3)
    rows = await pipeline_sums(leads.session, leads.tenant)
    assert [(r.status, r.leads, r.expected_volume) for r in rows] == [
        ("Erstkontakt", 1, Decimal("12000.00")), ("Angebot", 1, Decimal("0.30")),
        ("Verhandlung", 0, Decimal("0.00"))]
    by_action = await pipeline_sums(leads.session, leads.tenant, sales_action="Messe 2026")
    assert [r.leads for r in by_action] == [1, 0, 0]
    by_company = await pipeline_sums(leads.session, leads.tenant, include_won=True,
                                     company="globex")
    assert [(r.status, r.leads) for r in by_company if r.leads] == [("Gewonnen", 1)]
    december = await pipeline_sums(leads.session, leads.tenant, month_from="2026-12",
                                   month_to="2026-12")
    assert [(r.leads, r.expected_volume) for r in december][:2] == [
        (1, Decimal("12000.00")), (0, Decimal("0.00"))]
    from_january = await pipeline_sums(leads.session, leads.tenant, month_from="2027-01")
    assert [(r.leads, r.expected_volume) for r in from_january][:2] == [
        (0, Decimal("0.00")), (1, Decimal("0.20"))]
    with pytest.raises(InvalidRequest) as refused:
        await pipeline_sums(leads.session, leads.tenant, month_from="2027-02",
                            month_to="2027-01")
    assert str(refused.value) == "month range 2027-02..2027-01 is empty"


async def test_convert_creates_a_project_and_marks_the_lead_won(leads: LeadLibrary) -> None:
    project = await leads.convert_to_project(11111)
    assert project.as_json() == {"number": 20002, "name": "Website-Relaunch", "company": "acme",
                                 "contact": "bob@acme.com", "lead": 11111}  # convert --format json
    lead = await leads.get(11111)
    assert (lead.project, lead.status, lead.status_kind) == (20002, "Gewonnen", StatusKind.WON)
    with pytest.raises(Conflict, match="lead 11111 was already converted to project 20002"):
        await leads.convert_to_project(11111)
    with pytest.raises(InvalidRequest, match="lost"):
        await leads.convert_to_project(11114)


async def test_mail_filed_on_a_lead_stays_reachable_from_its_project(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    assert (await smtp.send(factories.mail(subject="Lead 11111"))).code == 250
    async with writing(crm) as session:
        tenant = await tenant_scope(session, "xyz")
        project = await LeadLibrary(session, tenant).convert_to_project(11111)
    assert (await smtp.send(factories.mail(subject=f"Projekt {project.number}"))).code == 250
    async with crm() as session:
        on_project = await list_history(session, tenant.id, project=project.number)
        on_lead = await list_history(session, tenant.id, lead=11111)
    assert [(e["lead"], e["project"]) for e in on_project] == [(11111, None),
                                                               (None, project.number)]
    assert len(on_lead) == 1


async def test_delete_refuses_a_lead_with_filed_mail_unless_detached(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    assert (await smtp.send(factories.mail(subject="Lead 11111"))).code == 250
    assert (await smtp.send(factories.mail(to="hank@globex.example",
                                           subject="Lead 11113"))).code == 250
    async with writing(crm) as session:
        library = LeadLibrary(session, await tenant_scope(session, "xyz"))
        with pytest.raises(Conflict) as refused:
            await library.delete(11111)
        assert str(refused.value) == ("lead 11111 has 1 contact-history entry: detach them "
                                      "(they stay with the company) or keep the lead")
        await library.delete(11112)  # nothing filed on it
        await library.delete(11111, detach_history=True)
        assert [lead.number for lead in await library.list_leads()] == [11113, 11114]
        entries = await list_history(session, library.tenant.id)
    # only the deleted lead's entry is detached; the other lead's keeps its lead
    assert sorted((e["subject"], e["lead"], e["company"], e["contact"]) for e in entries) == [
        ("Lead 11111", None, "acme", "bob@acme.com"),
        ("Lead 11113", 11113, "globex", "hank@globex.example")]


async def test_a_contact_is_found_by_its_address_as_people_write_it(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """An international domain is stored in its IDNA form; the library finds the contact by
    either, in any case, and names an unknown one as it was given."""
    document = directory()
    document["tenants"][0]["contacts"].append({"email": "jörg@bücher.example",
                                               "company": "acme"})
    await load_directory(sessions, document)
    async with writing(sessions) as session:
        library = LeadLibrary(session, await tenant_scope(session, "xyz"))
        [lead] = await library.update_many([11111], contact=" Jörg@BÜCHER.example ")
        assert lead.contact == "jörg@xn--bcher-kva.example"
        with pytest.raises(NotFound) as refused:
            await library.update_many([11111], contact="Nobody@acme.com")
        assert str(refused.value) == "no contact 'Nobody@acme.com' in tenant 'xyz'"


async def test_a_status_needs_a_name(leads: LeadLibrary) -> None:
    statuses = StatusLibrary(leads.session, leads.tenant)
    for call in (lambda: statuses.add(" \t", StatusKind.OPEN),
                 lambda: statuses.rename("Angebot", "  ")):
        with pytest.raises(InvalidRequest) as refused:
            await call()
        assert str(refused.value) == "a status needs a name"
    assert [v.name for v in await statuses.list_statuses()] == [
        "Erstkontakt", "Angebot", "Gewonnen", "Verloren"]


@pytest.mark.parametrize("position", [0, 6])
async def test_a_status_position_outside_the_list_is_refused(leads: LeadLibrary,
                                                             position: int) -> None:
    statuses = StatusLibrary(leads.session, leads.tenant)  # four statuses: 1 to 5 fit
    with pytest.raises(InvalidRequest) as refused:
        await statuses.add("Verhandlung", StatusKind.OPEN, position=position)
    assert str(refused.value) == "position must be between 1 and 5"
    views = await statuses.add("Verhandlung", StatusKind.OPEN, position=5)
    assert [(v.name, v.position) for v in views][-2:] == [("Verloren", 4), ("Verhandlung", 5)]


async def test_convert_takes_the_first_won_status_of_its_own_tenant(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """Another tenant's won status comes first by position; it is none of this lead's."""
    document = directory()
    document["tenants"][1]["lead_statuses"] = [{"name": "Auftrag", "kind": "won"},
                                               {"name": "Neu", "kind": "open"}]
    await load_directory(sessions, document)
    async with writing(sessions) as session:
        library = LeadLibrary(session, await tenant_scope(session, "xyz"))
        await library.convert_to_project(11111)
        assert (await library.get(11111)).status == "Gewonnen"


async def test_statuses_add_rename_reorder_and_delete_with_replacement(
        leads: LeadLibrary) -> None:
    statuses = StatusLibrary(leads.session, leads.tenant)
    await statuses.add("Verhandlung", StatusKind.OPEN, position=2)
    views = await statuses.rename("Verhandlung", "Verhandlungsphase")
    assert [v.name for v in views] == ["Erstkontakt", "Verhandlungsphase", "Angebot",
                                       "Gewonnen", "Verloren"]
    views = await statuses.reorder(["Angebot", "Erstkontakt", "Verhandlungsphase",
                                    "Gewonnen", "Verloren"])
    assert [(v.name, v.position) for v in views][:2] == [("Angebot", 1), ("Erstkontakt", 2)]
    for names, refusal in (
            (["Angebot", "Erstkontakt", "Verhandlungsphase"], "; missing: Gewonnen, Verloren"),
            (["Angebot", "Erstkontakt", "Verhandlungsphase", "Gewonnen", "Verloren", "Neu",
              "Alt"], "; unknown: Alt, Neu"),
            (["Angebot", "Erstkontakt", "Verhandlungsphase", "Gewonnen", "Neu"],
             "; missing: Verloren; unknown: Neu"),
            (["Angebot", "Angebot", "Erstkontakt", "Verhandlungsphase", "Gewonnen", "Verloren"],
             "")):
        with pytest.raises(InvalidRequest) as refused:
            await statuses.reorder(names)
        assert str(refused.value) == "name every status exactly once" + refusal
    with pytest.raises(Conflict, match="status 'Angebot' is used by 1 lead"):
        await statuses.delete("Angebot")
    with pytest.raises(InvalidRequest) as itself:
        await statuses.delete("Angebot", replacement="Angebot")
    assert str(itself.value) == "the replacement must be another status"
    views = await statuses.delete("Angebot", replacement="Verhandlungsphase")
    assert [(v.name, v.leads) for v in views] == [("Erstkontakt", 1), ("Verhandlungsphase", 1),
                                                  ("Gewonnen", 1), ("Verloren", 1)]
    assert (await leads.get(11112)).status == "Verhandlungsphase"
    await statuses.delete("Verhandlungsphase", replacement="Erstkontakt")
    with pytest.raises(Conflict, match="exists already"):
        await statuses.add("Gewonnen", "won")


async def test_sales_task_is_created_once_per_company(leads: LeadLibrary) -> None:
    first = await leads.sales_task("acme")
    again = await leads.sales_task("acme")
    other = await leads.sales_task("globex")
    assert first == again
    assert first.as_json() == {"project": 20002, "task_id": first.task_id, "task": "ACME AG",
                               "company": "acme"}  # sales-task --format json
    assert other.project == first.project and other.task_id != first.task_id
    lead = await leads.convert_to_project(11112)  # the sales project took a number
    assert lead.number == 20003


async def test_a_bulk_update_of_no_lead_is_refused(leads: LeadLibrary) -> None:
    with pytest.raises(InvalidRequest, match=r"^name at least one lead$"):
        await leads.update_many([], status="Angebot")


async def test_each_tenant_books_on_its_own_sales_project(
        crm: async_sessionmaker[AsyncSession]) -> None:
    tasks = {}
    for slug in ("xyz", "other"):  # xyz's sales project exists when the other's is wanted
        async with writing(crm) as session:
            tasks[slug] = await LeadLibrary(session, await tenant_scope(session, slug)
                                            ).sales_task("acme")
    async with crm() as session:
        owners = dict((await session.execute(
            select(ProjectTask.id, Project.tenant_id).join(Project))).all())
        tenant_ids = {slug: (await tenant_scope(session, slug)).id for slug in tasks}
    assert {slug: owners[task.task_id] for slug, task in tasks.items()} == tenant_ids
    assert tasks["other"].project == 1  # numbered among the other tenant's projects


async def test_a_sales_task_that_keeps_conflicting_is_given_up_with_a_clear_message(
        leads: LeadLibrary, monkeypatch: pytest.MonkeyPatch) -> None:
    async def conflicting() -> Project:  # as if another first use won every time
        raise IntegrityError("INSERT INTO project_tasks", {}, Exception("unique"))

    monkeypatch.setattr(leads, "_sales_project", conflicting)
    with pytest.raises(Conflict, match=r"^could not create the sales task for company "
                                       r"'acme': try again$"):
        await leads.sales_task("acme")


async def test_a_status_may_take_a_name_only_another_tenant_uses_but_not_its_own(
        leads: LeadLibrary) -> None:
    statuses = StatusLibrary(leads.session, leads.tenant)
    with pytest.raises(Conflict, match="status 'Angebot' exists already"):
        await statuses.rename("Erstkontakt", "Angebot")
    views = await statuses.rename("Angebot", "Neu")  # the other tenant's status
    assert [v.name for v in views] == ["Erstkontakt", "Neu", "Gewonnen", "Verloren"]
    with pytest.raises(InvalidRequest, match=r"exactly once; unknown: Offen$"):
        await statuses.reorder(["Erstkontakt", "Neu", "Gewonnen", "Verloren", "Offen"])


async def test_update_renames_and_changes_one_lead(leads: LeadLibrary) -> None:
    lead = await leads.update(11112, name="Wartung 2027", contact="carol@acme.com",
                              status="Erstkontakt", sales_action="Messe 2026")
    assert (lead.name, lead.contact, lead.status, lead.sales_action) == (
        "Wartung 2027", "carol@acme.com", "Erstkontakt", "Messe 2026")
    lead = await leads.update(11112, contact=None)
    assert (lead.name, lead.contact, lead.sales_action) == ("Wartung 2027", None,
                                                            "Messe 2026")
    with pytest.raises(InvalidRequest, match="the name must not be empty"):
        await leads.update(11112, name="  ")
    assert (await leads.get(11112)).name == "Wartung 2027"


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_two_converts_of_one_lead_at_once_make_one_project(
        crm: async_sessionmaker[AsyncSession]) -> None:
    """Issue 8, race 1: the second convert waits for the first, then is refused."""
    async with writing(crm) as first_session:
        first = LeadLibrary(first_session, await tenant_scope(first_session, "xyz"))
        await first.convert_to_project(11111)  # holds the lead's row until it commits

        async def second() -> Any:
            async with writing(crm) as session:
                library = LeadLibrary(session, await tenant_scope(session, "xyz"))
                return await library.convert_to_project(11111)

        racing = asyncio.create_task(second())
        await until_blocked_on_a_lock(crm)  # waiting on the lock, not making a second project
    with pytest.raises(Conflict, match="already converted to project"):
        await racing
    async with writing(crm) as session:
        library = LeadLibrary(session, await tenant_scope(session, "xyz"))
        lead = await library.get(11111)
        projects = await session.scalar(select(func.count()).select_from(Project))
    assert lead.project == 20002 and projects == 2  # 20001 from the directory, and one more


async def test_pipeline_counts_a_lead_that_has_no_planned_revenue(leads: LeadLibrary) -> None:
    await leads.create(name="Noch ohne Umsatz", company="acme", status="Angebot")
    # and a status whose only lead has none: its volume is zero, not missing
    await StatusLibrary(leads.session, leads.tenant).add("Verhandlung", StatusKind.OPEN)
    await leads.create(name="Auch ohne Umsatz", company="acme", status="Verhandlung")
    rows = await pipeline_sums(leads.session, leads.tenant)
    assert [(r.status, r.leads, r.expected_volume) for r in rows] == [
        ("Erstkontakt", 1, Decimal("12000.00")), ("Angebot", 2, Decimal("0.30")),
        ("Verhandlung", 1, Decimal("0.00"))]


async def test_convert_sets_the_first_won_status_in_status_order(leads: LeadLibrary) -> None:
    statuses = StatusLibrary(leads.session, leads.tenant)
    await statuses.add("Auftrag erteilt", StatusKind.WON, position=3)  # before "Gewonnen"
    await statuses.add("Abgerechnet", StatusKind.WON)  # last
    await leads.convert_to_project(11111)
    lead = await leads.get(11111)
    assert (lead.status, lead.status_kind) == ("Auftrag erteilt", StatusKind.WON)


async def test_set_kind_changes_what_a_status_counts_as(
        crm: async_sessionmaker[AsyncSession]) -> None:
    async with writing(crm) as session:
        views = await StatusLibrary(session, await tenant_scope(session, "xyz")).set_kind(
            "Angebot", "won")
        assert [(v.name, v.kind) for v in views if v.name == "Angebot"] == [
            ("Angebot", StatusKind.WON)]
    async with writing(crm) as session:
        tenant = await tenant_scope(session, "xyz")
        library = LeadLibrary(session, tenant)
        assert (await library.get(11112)).status_kind is StatusKind.WON
        assert [lead.number for lead in await library.list_leads(kinds=[StatusKind.WON])] == [
            11112, 11113]
        assert [row.status for row in await pipeline_sums(session, tenant)] == ["Erstkontakt"]
        with pytest.raises(InvalidRequest, match="must be open, won or lost"):
            await StatusLibrary(session, tenant).set_kind("Angebot", "maybe")


# A failure only the database sees: the library checks every lead before it writes, so a
# trigger stands in for what it cannot check (a constraint, a lock timeout, a lost server).
REFUSE_UPDATES_OF_LEAD_11113 = {
    "sqlite": ["CREATE TRIGGER refuse_11113 BEFORE UPDATE ON leads WHEN OLD.number = 11113 "
               "BEGIN SELECT RAISE(ABORT, 'lead 11113 refuses changes'); END"],
    "postgresql": [
        "CREATE FUNCTION refuse_lead_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION 'lead 11113 refuses changes' USING ERRCODE = 'check_violation'; "
        "END $$",
        "CREATE TRIGGER refuse_11113 BEFORE UPDATE ON leads FOR EACH ROW "
        "WHEN (OLD.number = 11113) EXECUTE FUNCTION refuse_lead_update()"],
}


async def test_a_bulk_update_failing_in_the_database_keeps_the_callers_earlier_work(
        crm: async_sessionmaker[AsyncSession], backend: str) -> None:
    async with writing(crm) as session:
        for statement in REFUSE_UPDATES_OF_LEAD_11113[backend]:
            await session.execute(text(statement))
    async with writing(crm) as session:
        library = LeadLibrary(session, await tenant_scope(session, "xyz"))
        before = [lead.as_json() for lead in await library.list_leads()]
        earlier = await library.create(name="Vorher angelegt", company="acme")
        with pytest.raises(IntegrityError, match="lead 11113 refuses changes"):
            await library.update_many([11111, 11112, 11113], status="Angebot",
                                      sales_action="Mailing")
        # The caller's transaction goes on, and commits at the end of this block.
    async with writing(crm) as session:
        library = LeadLibrary(session, await tenant_scope(session, "xyz"))
        after = [lead.as_json() for lead in await library.list_leads()]
    assert after == [*before, earlier.as_json()]


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("sales_project_exists", [False, True],
                         ids=["first-use-of-the-sales-project", "sales-project-exists"])
async def test_two_first_uses_of_a_sales_task_at_once_return_the_same_task(
        crm: async_sessionmaker[AsyncSession], sales_project_exists: bool) -> None:
    """The later one waits for the earlier one's insert, hits the unique key when it
    commits, and retries: it returns the rows the earlier one made."""
    if sales_project_exists:
        async with writing(crm) as session:
            await LeadLibrary(session, await tenant_scope(session, "xyz")).sales_task("globex")

    async def sales_task() -> SalesTask:
        async with writing(crm) as session:
            library = LeadLibrary(session, await tenant_scope(session, "xyz"))
            return await library.sales_task("acme")

    async with writing(crm) as session:
        first = await LeadLibrary(session, await tenant_scope(session, "xyz")).sales_task("acme")
        racing = asyncio.create_task(sales_task())
        await until_blocked_on_a_lock(crm)  # it found no task, and inserts one
    assert await racing == first
    async with crm() as session:
        tasks = await session.scalar(select(func.count()).select_from(ProjectTask))
        sales_projects = await session.scalar(select(func.count()).select_from(Project)
                                              .where(Project.is_sales_project.is_(True)))
    assert (tasks, sales_projects) == (2 if sales_project_exists else 1, 1)
