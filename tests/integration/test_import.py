"""The directory import: idempotent, updates in place, all-or-nothing, keeps what the CRM
changed since (and says so), on both backends."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from crm_mailer.db.engine import writing
from crm_mailer.db.models import (
    Company,
    CompanyDomain,
    Contact,
    Lead,
    LeadStatus,
    Project,
    ReviewPolicy,
    StatusKind,
    Tenant,
    TenantHost,
)
from crm_mailer.directory.importer import ImportReport, import_directory
from crm_mailer.directory.report import Action
from crm_mailer.directory.spec import parse_directory
from crm_mailer.errors import Conflict, DirectoryImportError
from crm_mailer.leads import LeadLibrary, pipeline_sums, tenant_scope
from crm_mailer.leads.statuses import StatusLibrary
from tests import factories
from tests.conftest import load_directory


async def snapshot(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    async with sessions() as session:
        leads = (await session.scalars(select(Lead).options(selectinload(Lead.planned_revenues))
                                       .order_by(Lead.id))).all()
        return {
            "hosts": sorted((await session.scalars(select(TenantHost.host))).all()),
            "companies": sorted((c.key, c.name) for c in await session.scalars(select(Company))),
            "domains": sorted((await session.scalars(select(CompanyDomain.domain))).all()),
            "contacts": sorted((c.email, c.name, c.company_id)
                               for c in await session.scalars(select(Contact))),
            "statuses": [(s.name, s.kind.value) for s in await session.scalars(
                select(LeadStatus).order_by(LeadStatus.position))],
            "leads": [(lead.number, lead.name, lead.contact_id,
                       [(r.month.isoformat(), r.amount) for r in lead.planned_revenues])
                      for lead in leads],
        }


async def contact_of_lead(sessions: async_sessionmaker[AsyncSession], number: int) -> str | None:
    async with sessions() as session:
        return await session.scalar(select(Contact.email).join(Lead, Lead.contact_id == Contact.id)
                                    .where(Lead.number == number))


async def test_reimporting_the_same_file_changes_nothing(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    first = await load_directory(sessions, factories.directory())
    assert first["lead created"] == 1 and first["contact created"] == 1
    before = await snapshot(sessions)
    assert not await load_directory(sessions, factories.directory())
    assert await snapshot(sessions) == before


async def test_amounts_stay_exact_decimals(sessions: async_sessionmaker[AsyncSession]) -> None:
    document = factories.directory()
    document["tenants"][0]["leads"][0]["planned_revenues"] = [
        {"month": "2026-12", "amount": "0.10"}, {"month": "2027-01", "amount": "0.20"},
        {"month": "2027-02", "amount": "99999999999.99"}]
    await load_directory(sessions, document)
    [lead] = (await snapshot(sessions))["leads"]
    amounts = [amount for _, amount in lead[3]]
    assert amounts == [Decimal("0.10"), Decimal("0.20"), Decimal("99999999999.99")]
    assert all(isinstance(a, Decimal) for a in amounts)
    assert sum(amounts[:2]) == Decimal("0.30")


async def test_a_changed_file_updates_in_place(sessions: async_sessionmaker[AsyncSession]) -> None:
    await load_directory(sessions, factories.directory())
    document = factories.directory(hosts=["xyz.hq.example", "crm.xyz.example"])
    tenant = document["tenants"][0]
    tenant["companies"][0]["domains"] = ["acme.com", "acme.de"]
    tenant["contacts"][0]["name"] = "Robert Bauer"
    tenant["contacts"].append({"email": "Carol@ACME.com", "company": "acme"})
    tenant["leads"][0].update(name="Relaunch 2027", contact="carol@acme.com",
                              planned_revenues=[{"month": "2027-01", "amount": "500"}])
    report = await load_directory(sessions, document)
    assert report["contact created"] == 1 and report["contact updated"] == 1
    state = await snapshot(sessions)
    assert state["hosts"] == ["crm.xyz.example", "xyz.hq.example"]
    assert state["domains"] == ["acme.com", "acme.de"]
    assert [c[:2] for c in state["contacts"]] == [("bob@acme.com", "Robert Bauer"),
                                                   ("carol@acme.com", "")]
    [lead] = state["leads"]
    assert lead[1] == "Relaunch 2027" and lead[3] == [("2027-01-01", Decimal("500.00"))]
    assert await contact_of_lead(sessions, 11111) == "carol@acme.com"
    # Removing a host from the file stops accepting it; records not named are kept.
    document["tenants"][0]["hosts"] = ["crm.xyz.example"]
    document["tenants"][0]["contacts"] = []
    document["tenants"][0]["leads"][0]["contact"] = None
    await load_directory(sessions, document)
    state = await snapshot(sessions)
    assert state["hosts"] == ["crm.xyz.example"] and len(state["contacts"]) == 2
    assert await contact_of_lead(sessions, 11111) is None


@pytest.mark.parametrize("change, message", [
    (lambda t: t["contacts"].append({"email": "x@acme.com", "company": "nope"}),
     "tenant 'xyz', contact 'x@acme.com': company 'nope' does not exist"),
    (lambda t: t["leads"][0].update(status="Unbekannt"),
     "tenant 'xyz', lead 11111: status 'Unbekannt' does not exist"),
    (lambda t: t["leads"][0].update(sales_action="Nope"),
     "tenant 'xyz', lead 11111: sales action 'Nope' does not exist"),
    (lambda t: t["leads"][0].update(contact="ghost@acme.com"),
     "tenant 'xyz', lead 11111: contact 'ghost@acme.com' does not exist"),
    (lambda t: t["companies"].append({"key": "b", "domains": ["acme.com"]}),
     "tenant 'xyz': company domain 'acme.com' appears twice"),
])
async def test_an_error_names_tenant_and_record_and_changes_nothing(
        sessions: async_sessionmaker[AsyncSession], change: Any, message: str) -> None:
    await load_directory(sessions, factories.directory())
    before = await snapshot(sessions)
    document = factories.directory(name="Renamed", hosts=["new.example"])
    change(document["tenants"][0])
    with pytest.raises(DirectoryImportError) as raised:
        await load_directory(sessions, document)
    assert str(raised.value) == message
    assert await snapshot(sessions) == before


async def test_a_host_of_another_tenant_is_refused(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    document = factories.directory()
    other = factories.second_tenant()
    other["hosts"] = ["xyz.hq.example"]
    document["tenants"].append(other)
    twice = re.escape("host 'xyz.hq.example' appears twice")
    with pytest.raises(DirectoryImportError, match=twice):
        await load_directory(sessions, document)
    await load_directory(sessions, factories.directory())
    with pytest.raises(DirectoryImportError, match=re.escape(
            "tenant 'other', host 'xyz.hq.example': already registered to tenant 'xyz'")):
        await load_directory(sessions, {"tenants": [other]})


@pytest.mark.parametrize("document, fragment", [
    ("not json", "not valid JSON"),
    ('{"tenants": [{"slug": "Bad Slug"}]}', "slug 'Bad Slug'"),
    ('{"tenants": [{"slug": "x", "hosts": ["not a host!"]}]}', "host 'not a host!'"),
    ('{"tenants": [{"slug": "x", "leads": [{"number": "12", "name": "n"}]}]}',
     "'number' must be a positive whole number"),
    ('{"tenants": [{"slug": "x", "leads": [{"number": 1, "name": "n", "planned_revenues": '
     '[{"month": "2026-13", "amount": "1"}]}]}]}', "month '2026-13'"),
    ('{"tenants": [{"slug": "x", "leads": [{"number": 1, "name": "n", "planned_revenues": '
     '[{"month": "2026-12", "amount": "1.005"}]}]}]}', "at most two decimal places"),
    ('{"tenants": [{"slug": "x", "leads": [{"number": 1, "name": "n", "planned_revenues": '
     '[{"month": "2026-12", "amount": true}]}]}]}', "decimal string"),
    ('{"tenants": [{"slug": "x", "contacts": [{"email": "no-at-sign"}]}]}', "not a mail address"),
    # The library's rules, not looser ones (issue 8): nothing the library would refuse.
    ('{"tenants": [{"slug": "x", "leads": [{"number": 1, "name": "n", "planned_revenues": '
     '[{"month": "2026-12", "amount": "-5000.00"}]}]}]}',
     "tenant 'x', lead 1, planned_revenues[0]: amount '-5000.00' must be between 0 and"),
    ('{"tenants": [{"slug": "x", "leads": [{"number": 1, "name": "n", "planned_revenues": '
     '[{"month": "2026-12", "amount": -5000}]}]}]}', "must be between 0 and"),
    ('{"tenants": [{"slug": "x", "leads": [{"number": 1, "name": "n", "planned_revenues": '
     '[{"month": "2026-12", "amount": "0"}]}]}]}', "more than 0 (leave the month out"),
    ('{"tenants": [{"slug": "x", "leads": [{"number": 1, "name": "n", "planned_revenues": '
     '[{"month": "0000-12", "amount": "1"}]}]}]}', "month '0000-12' must be YYYY-MM"),
    ('{"tenants": [{"slug": "x", "lead_statuses": [{"name": "A", "kind": "maybe"}]}]}',
     "tenant 'x', lead status 'A': kind must be open, won or lost, not 'maybe'"),
])
def test_malformed_files_are_refused_with_the_place(document: str, fragment: str) -> None:
    with pytest.raises(DirectoryImportError) as raised:
        parse_directory(document)
    assert fragment in str(raised.value)


def with_amount(written: str) -> str:
    """A one-lead file whose one planned revenue has `written` as its amount, verbatim."""
    return ('{"tenants": [{"slug": "x", "leads": [{"number": 1, "name": "n", "planned_revenues": '
            f'[{{"month": "2026-12", "amount": {written}}}]}}]}}]}}')


@pytest.mark.parametrize("written, stored", [
    ("0.1", Decimal("0.10")), ("12000.5", Decimal("12000.50")), ("12000", Decimal("12000.00")),
    ("1.2e3", Decimal("1200.00")), ('"12000.50"', Decimal("12000.50"))])
def test_json_number_amounts_are_read_exactly_as_written_not_as_floats(
        written: str, stored: Decimal) -> None:
    [spec] = parse_directory(with_amount(written))
    amount = spec.leads[0].planned_revenues[0].amount
    assert amount == stored and str(amount) == str(stored)


@pytest.mark.parametrize("written", ["0.30000000000000004", "12000.499999999999", "NaN",
                                     "Infinity", "1e400"])
def test_a_json_number_that_is_no_exact_amount_is_refused(written: str) -> None:
    """What a float writer leaves behind (0.1 + 0.2) is refused, never rounded."""
    with pytest.raises(DirectoryImportError, match=r"amount|not valid JSON"):
        parse_directory(with_amount(written))


LEAD = '{"number": 11111, "name": "n"'


@pytest.mark.parametrize("document, message", [
    ('{"tenants": [], "tenant": []}', "the file: key 'tenant' is unknown (known: tenants)"),
    ('{"tenants": [{"slug": "xyz", "domian": "x"}]}', "tenant 'xyz': key 'domian' is unknown"),
    ('{"tenants": [{"slg": "xyz"}]}', "tenants[0]: key 'slg' is unknown"),
    ('{"tenants": [{"slug": "xyz", "lead_statuses": [{"name": "A", "knd": "open"}]}]}',
     "tenant 'xyz', lead status 'A': key 'knd' is unknown (known: name, kind)"),
    ('{"tenants": [{"slug": "xyz", "companies": [{"key": "acme", "domian": ["a.com"]}]}]}',
     "tenant 'xyz', company 'acme': key 'domian' is unknown (known: key, name, domains)"),
    ('{"tenants": [{"slug": "xyz", "contacts": [{"email": "b@a.com", "compnay": "a"}]}]}',
     "tenant 'xyz', contact 'b@a.com': key 'compnay' is unknown"),
    ('{"tenants": [{"slug": "xyz", "leads": [' + LEAD + ', "stauts": "Gewonnen"}]}]}',
     "tenant 'xyz', lead 11111: key 'stauts' is unknown (known: number, name, company, "
     "contact, status, sales_action, planned_revenues)"),
    ('{"tenants": [{"slug": "xyz", "leads": [{"numbr": 11111, "name": "n"}]}]}',
     "tenant 'xyz', leads[0]: key 'numbr' is unknown"),
    ('{"tenants": [{"slug": "xyz", "leads": [' + LEAD + ', "planned_revenues": '
     '[{"month": "2026-12", "amount": "1", "currency": "EUR"}]}]}]}',
     "tenant 'xyz', lead 11111, planned_revenues[0]: key 'currency' is unknown"),
    ('{"tenants": [{"slug": "xyz", "projects": [{"number": 20001, "name": "p", "lead": 1}]}]}',
     "tenant 'xyz', project 20001: key 'lead' is unknown (known: number, name, company, "
     "contact)"),
    ('{"tenants": [{"slug": "xyz", "leads": [' + LEAD + ', "status": "A", "status": "B"}]}]}',
     "tenant 'xyz', lead 11111: key 'status' appears twice"),
])
def test_unknown_keys_are_refused_with_their_place(document: str, message: str) -> None:
    with pytest.raises(DirectoryImportError) as raised:
        parse_directory(document)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize("document", ["1" * 5000, "[" * 100_000, b'{"tenants": "\xff"}'])
def test_a_file_no_json_reader_takes_is_one_error(document: str | bytes) -> None:
    with pytest.raises(DirectoryImportError, match=r"^the file is not valid JSON: "):
        parse_directory(document)


def test_hosts_and_emails_are_stored_in_idna_form() -> None:
    [spec] = parse_directory('{"tenants": [{"slug": "x", "hosts": ["Büro-ABC.example"], '
                             '"contacts": [{"email": "Jürgen@Müller.example"}]}]}')
    assert spec.hosts == ("xn--bro-abc-n2a.example",)
    assert spec.contacts[0].email == "jürgen@xn--mller-kva.example"


@pytest.mark.parametrize("record", ["lead 11111", "project 20001"])
async def test_a_contact_of_another_company_is_refused_and_changes_nothing(
        sessions: async_sessionmaker[AsyncSession], record: str) -> None:
    await load_directory(sessions, factories.directory())
    before = await snapshot(sessions)
    document = factories.directory()
    tenant = document["tenants"][0]
    tenant["companies"].append({"key": "globex", "name": "Globex", "domains": ["globex.example"]})
    tenant["contacts"].append({"email": "hank@globex.example", "company": "globex"})
    kind, number = record.split()
    [row] = [r for r in tenant[f"{kind}s"] if r["number"] == int(number)]
    row.update(company="acme", contact="hank@globex.example")
    with pytest.raises(DirectoryImportError) as raised:
        await load_directory(sessions, document)
    assert str(raised.value) == (f"tenant 'xyz', {record}: contact 'hank@globex.example' "
                                 "does not belong to its company")
    assert await snapshot(sessions) == before


# --- re-importing after changes made through the library (issue 8, item 8) -----------------

async def load(sessions: async_sessionmaker[AsyncSession], document: dict[str, Any], *,
               overwrite: bool = False) -> ImportReport:
    async with sessions() as session, session.begin():
        return await import_directory(session, parse_directory(factories.dumps(document)),
                                      overwrite=overwrite)


async def through_library(sessions: async_sessionmaker[AsyncSession],
                          call: Callable[[LeadLibrary], Awaitable[Any]]) -> Any:
    async with writing(sessions) as session:
        return await call(LeadLibrary(session, await tenant_scope(session, "xyz")))


def lines(report: ImportReport, action: Action) -> list[str]:
    return [str(line) for line in report.lines if line.action is action]


def wider() -> dict[str, Any]:
    """The README example with a second contact at acme and a second company."""
    document = factories.directory()
    tenant = document["tenants"][0]
    tenant["companies"].append({"key": "globex", "name": "Globex", "domains": ["globex.example"]})
    tenant["contacts"] += [{"email": "carol@acme.com", "company": "acme"},
                           {"email": "hank@globex.example", "company": "globex"}]
    return document


async def test_reimporting_after_convert_keeps_the_lead_won_and_reports_the_conflict(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """The issue's scenario: the README example, `leads convert 11111`, the same file again."""
    await load(sessions, factories.directory())
    project = await through_library(sessions, lambda leads: leads.convert_to_project(11111))
    conflict = ("conflict    tenant 'xyz', lead 11111, status: imported 'Erstkontakt', current "
                "'Gewonnen'; kept: converted to project 20002, it must keep a won status, not "
                "'Erstkontakt' (open)")
    for overwrite in (False, False, True):  # reported again each time; never forced
        report = await load(sessions, factories.directory(), overwrite=overwrite)
        assert lines(report, Action.CONFLICT) == [conflict]
        assert lines(report, Action.CHANGED) == lines(report, Action.OVERWRITTEN) == []
        lead = await through_library(sessions, lambda leads: leads.get(11111))
        assert (lead.status, lead.status_kind, lead.project) == ("Gewonnen", StatusKind.WON,
                                                                 project.number)
    async with sessions() as session:
        rows = await pipeline_sums(session, await tenant_scope(session, "xyz"),
                                   include_won=True)
    assert [(row.status, row.leads) for row in rows] == [("Erstkontakt", 0), ("Gewonnen", 1)]
    with pytest.raises(Conflict, match="already converted to project 20002"):
        await through_library(sessions, lambda leads: leads.convert_to_project(11111))


async def test_a_field_changed_in_the_crm_is_kept_and_each_conflict_reported(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await load(sessions, wider())

    async def change(leads: LeadLibrary) -> None:
        await leads.update(11111, name="Relaunch (Anna)", contact="carol@acme.com",
                           sales_action=None)
        await leads.set_revenue(11111, "2026-12", "15000")
    await through_library(sessions, change)
    document = wider()
    document["tenants"][0]["projects"][0]["name"] = "Support 2027"  # changed in the file only
    report = await load(sessions, document)
    kept = "kept: changed in the CRM since the last import"
    assert lines(report, Action.CONFLICT) == [
        f"conflict    tenant 'xyz', lead 11111, name: imported 'Website-Relaunch', current "
        f"'Relaunch (Anna)'; {kept}",
        f"conflict    tenant 'xyz', lead 11111, contact: imported 'bob@acme.com', current "
        f"'carol@acme.com'; {kept}",
        f"conflict    tenant 'xyz', lead 11111, sales_action: imported 'Messe 2026', current "
        f"none; {kept}",
        f"conflict    tenant 'xyz', lead 11111, planned_revenues 2026-12: imported '12000.00', "
        f"current '15000.00'; {kept}"]
    assert lines(report, Action.CHANGED) == ["changed     tenant 'xyz', project 20001: name"]
    lead = await through_library(sessions, lambda leads: leads.get(11111))
    assert (lead.name, lead.contact, lead.sales_action, lead.planned_revenues) == (
        "Relaunch (Anna)", "carol@acme.com", None, ((dt.date(2026, 12, 1), Decimal("15000.00")),))
    # The same file again: the same conflicts, nothing else.
    again = await load(sessions, document)
    assert lines(again, Action.CONFLICT) == lines(report, Action.CONFLICT)
    assert again.counts == Counter({"conflict": 4})
    # The file takes the CRM's values: resolved, and quiet from then on.
    tenant = document["tenants"][0]
    tenant["leads"][0].update(name="Relaunch (Anna)", contact="carol@acme.com",
                              sales_action=None,
                              planned_revenues=[{"month": "2026-12", "amount": "15000.00"}])
    assert not await load(sessions, document)
    assert not await load(sessions, document)


async def test_overwrite_puts_the_files_values_back_and_says_what_it_replaced(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await load(sessions, wider())
    await through_library(sessions, lambda leads: leads.update(11111, name="Anna's",
                                                               status="Verloren"))
    report = await load(sessions, wider(), overwrite=True)
    assert lines(report, Action.OVERWRITTEN) == [
        "overwritten tenant 'xyz', lead 11111, name: imported 'Website-Relaunch', was \"Anna's\"",
        "overwritten tenant 'xyz', lead 11111, status: imported 'Erstkontakt', was 'Verloren'"]
    assert lines(report, Action.CHANGED) == [
        "changed     tenant 'xyz', lead 11111: name, status"]
    assert lines(report, Action.CONFLICT) == []
    lead = await through_library(sessions, lambda leads: leads.get(11111))
    assert (lead.name, lead.status) == ("Website-Relaunch", "Erstkontakt")
    assert not await load(sessions, wider())


async def test_planned_revenues_merge_month_by_month(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await load(sessions, factories.directory())

    async def plan(leads: LeadLibrary) -> None:
        await leads.set_revenue(11111, "2026-12", "11000.00")  # changed in the CRM
        await leads.set_revenue(11111, "2027-02", "300.00")  # added in the CRM
    await through_library(sessions, plan)
    document = factories.directory()
    document["tenants"][0]["leads"][0]["planned_revenues"] = [
        {"month": "2026-12", "amount": "12000.00"}, {"month": "2027-01", "amount": "500.00"}]
    report = await load(sessions, document)
    assert lines(report, Action.CHANGED) == [
        "changed     tenant 'xyz', lead 11111: planned_revenues 2027-01"]
    assert [line.field for line in report.conflicts] == ["planned_revenues 2026-12",
                                                         "planned_revenues 2027-02"]
    assert str(report.conflicts[1]).endswith(
        "2027-02: imported none, current '300.00'; kept: changed in the CRM since the last import")
    lead = await through_library(sessions, lambda leads: leads.get(11111))
    assert [(m.isoformat(), str(a)) for m, a in lead.planned_revenues] == [
        ("2026-12-01", "11000.00"), ("2027-01-01", "500.00"), ("2027-02-01", "300.00")]


async def test_company_and_contact_stay_together_when_one_is_kept(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await load(sessions, wider())
    await through_library(sessions, lambda leads: leads.update(11111, contact="carol@acme.com"))
    document = wider()
    document["tenants"][0]["leads"][0].update(company="globex", contact="hank@globex.example")
    report = await load(sessions, document)
    assert lines(report, Action.CONFLICT) == [
        "conflict    tenant 'xyz', lead 11111, company: imported 'globex', current 'acme'; "
        "kept: the contact 'carol@acme.com', kept from the CRM, is not of company 'globex'",
        "conflict    tenant 'xyz', lead 11111, contact: imported 'hank@globex.example', current "
        "'carol@acme.com'; kept: changed in the CRM since the last import"]
    lead = await through_library(sessions, lambda leads: leads.get(11111))
    assert (lead.company, lead.contact) == ("acme", "carol@acme.com")
    await load(sessions, document, overwrite=True)
    lead = await through_library(sessions, lambda leads: leads.get(11111))
    assert (lead.company, lead.contact) == ("globex", "hank@globex.example")


async def test_a_lead_made_through_the_library_is_not_overwritten_by_the_first_import(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await load(sessions, factories.directory())
    made = await through_library(sessions, lambda leads: leads.create(
        name="Wartung 2027", company="acme", contact="bob@acme.com"))
    document = factories.directory()
    document["tenants"][0]["leads"].append({"number": made.number, "name": "Wartung",
                                            "company": "acme", "contact": "bob@acme.com"})
    report = await load(sessions, document)
    assert lines(report, Action.CONFLICT) == [
        f"conflict    tenant 'xyz', lead {made.number}, name: imported 'Wartung', current "
        "'Wartung 2027'; kept: set in the CRM, never imported"]
    assert (await through_library(sessions, lambda leads: leads.get(made.number))).name \
        == "Wartung 2027"


async def test_records_from_before_0005_take_the_file_as_before_within_the_rules(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """No baseline yet ({}): the file's values apply, as they did, but never one the
    library refuses: the converted lead of the issue stays won."""
    await load(sessions, factories.directory())
    await through_library(sessions, lambda leads: leads.convert_to_project(11111))
    await through_library(sessions, lambda leads: leads.update(11111, name="Renamed"))
    async with sessions() as session, session.begin():
        await session.execute(update(Lead).values(imported={}))
    report = await load(sessions, factories.directory())
    assert lines(report, Action.CHANGED) == ["changed     tenant 'xyz', lead 11111: name"]
    assert [line.field for line in report.conflicts] == ["status"]
    lead = await through_library(sessions, lambda leads: leads.get(11111))
    assert (lead.name, lead.status) == ("Website-Relaunch", "Gewonnen")


async def test_a_lead_without_status_in_the_file_keeps_the_crms_status(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    document = factories.directory()
    del document["tenants"][0]["leads"][0]["status"]
    await load(sessions, document)
    assert (await through_library(sessions, lambda leads: leads.get(11111))).status \
        == "Erstkontakt"  # a new lead: the first open status
    await through_library(sessions, lambda leads: leads.update(11111, status="Verloren"))
    assert not await load(sessions, document)
    assert (await through_library(sessions, lambda leads: leads.get(11111))).status \
        == "Verloren"


async def test_a_won_status_that_converted_leads_hold_stays_won(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await load(sessions, factories.directory())
    await through_library(sessions, lambda leads: leads.convert_to_project(11111))
    document = factories.directory()
    document["tenants"][0]["lead_statuses"][1]["kind"] = "open"
    document["tenants"][0]["leads"][0]["status"] = "Gewonnen"
    report = await load(sessions, document, overwrite=True)
    assert lines(report, Action.CONFLICT) == [
        "conflict    tenant 'xyz', lead status 'Gewonnen', kind: imported 'open', current "
        "'won'; kept: lead 11111 was converted to project 20002, it must keep a won status, "
        "not 'Gewonnen' (open)"]
    lead = await through_library(sessions, lambda leads: leads.get(11111))
    assert (lead.status, lead.status_kind) == ("Gewonnen", StatusKind.WON)


async def test_moving_a_contact_away_from_a_lead_the_file_leaves_alone_is_refused(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await load(sessions, wider())
    await through_library(sessions, lambda leads: leads.create(
        name="Wartung", company="acme", contact="carol@acme.com"))
    before = await snapshot(sessions)
    document = wider()
    document["tenants"][0]["contacts"][1]["company"] = "globex"
    with pytest.raises(DirectoryImportError) as raised:
        await load(sessions, document)
    assert str(raised.value) == ("tenant 'xyz', lead 11112: contact 'carol@acme.com' does not "
                                 "belong to its company 'acme' after the import")
    assert await snapshot(sessions) == before


async def test_a_record_broken_before_the_import_is_shown_not_blamed_on_it(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """A lead set back to open while converted (what imports did before issue 8)."""
    await load(sessions, factories.directory())
    await through_library(sessions, lambda leads: leads.convert_to_project(11111))
    async with sessions() as session, session.begin():
        open_status = await session.scalar(select(LeadStatus.id).where(
            LeadStatus.name == "Erstkontakt"))
        await session.execute(update(Lead).values(status_id=open_status))
    report = await load(sessions, factories.directory())
    assert lines(report, Action.INVALID) == [
        "invalid     tenant 'xyz', lead 11111: converted to project 20002, it must keep a won "
        "status, not 'Erstkontakt' (open); so before the import: fix it in the CRM"]
    document = factories.directory()
    document["tenants"][0]["leads"][0]["status"] = "Gewonnen"  # the file can mend it
    report = await load(sessions, document)
    assert lines(report, Action.CHANGED) == ["changed     tenant 'xyz', lead 11111: status"]
    assert lines(report, Action.INVALID) == []


async def test_records_broken_before_are_listed_by_number_and_only_the_tenants_own(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """Each rule's breaks, leads by number then projects, and never another tenant's: the
    other tenant's broken lead has a number of its own, so it could not hide behind one."""
    document = wider()
    tenant = document["tenants"][0]
    # 11111 at globex, whose rows follow acme's in the index on (tenant, company): read
    # by that index, PostgreSQL returns 11112 first.
    tenant["leads"][0].update(company="globex", contact="hank@globex.example")
    tenant["leads"] += [{"number": number, "name": name, "company": "acme",
                         "contact": "bob@acme.com"}
                        for number, name in ((11112, "Wartung"), (11113, "Hosting"),
                                             (11114, "Schulung"))]
    other = factories.second_tenant()
    other["leads"][0]["number"] = 11119
    other["projects"] = [{"number": 20009, "name": "Other's project", "company": "acme"}]
    await load(sessions, {"tenants": [*document["tenants"], other]})
    for number in (11112, 11111):
        await through_library(sessions, lambda leads, n=number: leads.convert_to_project(n))
    async with sessions() as session, session.begin():
        xyz, elsewhere = [await session.scalar(select(Tenant.id).where(Tenant.slug == slug))
                          for slug in ("xyz", "other")]
        open_status = await session.scalar(select(LeadStatus.id).where(
            LeadStatus.tenant_id == xyz, LeadStatus.name == "Erstkontakt"))
        hank = await session.scalar(select(Contact.id).where(
            Contact.email == "hank@globex.example"))
        # Each pair updated in reverse, so that the lower number's row version comes last:
        # only an ORDER BY lists them by number.
        for number in (11112, 11111):
            await session.execute(update(Lead).where(Lead.tenant_id == xyz,
                                                     Lead.number == number)
                                  .values(status_id=open_status))
        for number in (11114, 11113):
            await session.execute(update(Lead).where(Lead.tenant_id == xyz,
                                                     Lead.number == number)
                                  .values(company_id=None))
        await session.execute(update(Project).where(Project.tenant_id == xyz,
                                                    Project.number == 20001)
                              .values(contact_id=hank))
        others_project = await session.scalar(select(Project.id).where(
            Project.tenant_id == elsewhere))
        await session.execute(update(Lead).where(Lead.tenant_id == elsewhere)
                              .values(project_id=others_project, company_id=None))
    report = await load(sessions, document)
    kept = "; so before the import: fix it in the CRM"
    converted = "converted to project {}, it must keep a won status, not 'Erstkontakt' (open)"
    assert lines(report, Action.INVALID) == [
        f"invalid     tenant 'xyz', lead 11111: {converted.format(20003)}{kept}",
        f"invalid     tenant 'xyz', lead 11112: {converted.format(20002)}{kept}",
        "invalid     tenant 'xyz', lead 11113: contact 'bob@acme.com' does not belong to its "
        f"company (it has none){kept}",
        "invalid     tenant 'xyz', lead 11114: contact 'bob@acme.com' does not belong to its "
        f"company (it has none){kept}",
        "invalid     tenant 'xyz', project 20001: contact 'hank@globex.example' does not "
        f"belong to its company 'acme'{kept}"]
    since = "kept: changed in the CRM since the last import"
    assert lines(report, Action.CONFLICT) == [
        f"conflict    tenant 'xyz', project 20001, contact: imported none, current "
        f"'hank@globex.example'; {since}",
        f"conflict    tenant 'xyz', lead 11113, company: imported 'acme', current none; {since}",
        f"conflict    tenant 'xyz', lead 11114, company: imported 'acme', current none; {since}"]
    report = await load(sessions, document, overwrite=True)  # the file's pairs mend them
    assert [line.split(":")[0] for line in lines(report, Action.INVALID)] == [
        "invalid     tenant 'xyz', lead 11111", "invalid     tenant 'xyz', lead 11112"]


async def test_the_report_lists_records_in_the_files_order_with_tallies(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await load(sessions, factories.directory())
    await through_library(sessions, lambda leads: leads.create(name="Neu", company="acme"))
    document = factories.directory(name="XYZ AG")
    tenant = document["tenants"][0]
    tenant["companies"][0]["domains"].append("acme.de")
    tenant["contacts"].append({"email": "carol@acme.com", "company": "acme"})
    report = await load(sessions, document)
    assert [str(line) for line in report.lines] == [
        "changed     tenant 'xyz': name",
        "changed     tenant 'xyz', company 'acme': domains",
        "created     tenant 'xyz', contact 'carol@acme.com'",
        "unchanged   tenant 'xyz': 3 lead statuses, 1 sales action, 1 contact, 1 project, 1 lead",
        "left alone  tenant 'xyz': 1 lead not in the file"]
    assert report.summary() == "1 company updated, 1 contact created, 1 tenant updated"


# --- statuses and tenant settings changed in the CRM (issue 8, item 8, continued) ----------

async def through_statuses(sessions: async_sessionmaker[AsyncSession],
                           call: Callable[[StatusLibrary], Awaitable[Any]]) -> Any:
    async with writing(sessions) as session:
        return await call(StatusLibrary(session, await tenant_scope(session, "xyz")))


async def statuses(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, str, int]]:
    """(name, kind, leads) of each status, in pipeline order."""
    views = await through_statuses(sessions, lambda library: library.list_statuses())
    return [(view.name, view.kind.value, view.leads) for view in views]


async def status_of(sessions: async_sessionmaker[AsyncSession], number: int) -> str:
    return str((await through_library(sessions, lambda leads: leads.get(number))).status)


def said(report: ImportReport) -> list[str]:
    """The report without its tallies."""
    return [str(line) for line in report.lines
            if line.action not in (Action.UNCHANGED, Action.LEFT_ALONE)]


KEPT = "kept: changed in the CRM since the last import"


async def test_a_status_renamed_in_the_crm_is_still_the_one_the_file_names(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """The file's old name refers to the renamed status: it is not created again, and a
    lead the file gives that name is in it, without a conflict."""
    await load(sessions, factories.directory())
    await through_statuses(sessions, lambda library: library.rename("Erstkontakt", "Neu"))
    document = factories.directory()
    document["tenants"][0]["leads"].append({"number": 11112, "name": "Wartung",
                                            "company": "acme", "status": "Erstkontakt"})
    report = await load(sessions, document)
    assert said(report) == [
        "conflict    tenant 'xyz', lead status 'Erstkontakt', name: imported 'Erstkontakt', "
        f"current 'Neu'; {KEPT}",
        "created     tenant 'xyz', lead 11112"]
    assert await statuses(sessions) == [("Neu", "open", 2), ("Gewonnen", "won", 0),
                                        ("Verloren", "lost", 0)]
    assert (await load(sessions, document)).counts == Counter({"conflict": 1})
    # The file takes the CRM's name: quiet from then on.
    renamed = factories.dumps(document).replace('"Erstkontakt"', '"Neu"')
    assert not await load(sessions, json.loads(renamed))
    assert await statuses(sessions) == [("Neu", "open", 2), ("Gewonnen", "won", 0),
                                        ("Verloren", "lost", 0)]


async def test_overwrite_renames_a_status_back_unless_another_holds_the_name(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await load(sessions, factories.directory())

    async def rename(library: StatusLibrary) -> None:
        await library.rename("Verloren", "Abgesagt")
        await library.rename("Gewonnen", "Auftrag")
        await library.add("Gewonnen", "won")  # a new status takes the old name
    await through_statuses(sessions, rename)
    report = await load(sessions, factories.directory(), overwrite=True)
    assert said(report) == [
        "conflict    tenant 'xyz', lead status 'Gewonnen', name: imported 'Gewonnen', current "
        "'Auftrag'; kept: the CRM has another lead status named 'Gewonnen'",
        "changed     tenant 'xyz', lead status 'Verloren': name",
        "overwritten tenant 'xyz', lead status 'Verloren', name: imported 'Verloren', was "
        "'Abgesagt'"]
    assert [name for name, _, _ in await statuses(sessions)] == [
        "Erstkontakt", "Auftrag", "Verloren", "Gewonnen"]


async def test_a_status_name_held_by_one_renamed_in_the_crm_is_not_created(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """The CRM renamed 'Verloren' to 'Abgesagt' while the file added an 'Abgesagt': the file
    still means both; the name is taken, so its leads keep their status until --overwrite."""
    await load(sessions, factories.directory())
    await through_statuses(sessions, lambda library: library.rename("Verloren", "Abgesagt"))
    document = factories.directory()
    tenant = document["tenants"][0]
    tenant["lead_statuses"].append({"name": "Abgesagt", "kind": "lost"})
    tenant["leads"][0]["status"] = "Abgesagt"
    not_created = "not created: the CRM renamed lead status 'Verloren' to it"
    for _ in range(2):
        assert said(await load(sessions, document)) == [
            "conflict    tenant 'xyz', lead status 'Verloren', name: imported 'Verloren', "
            f"current 'Abgesagt'; {KEPT}",
            f"conflict    tenant 'xyz', lead status 'Abgesagt': {not_created}",
            "conflict    tenant 'xyz', lead 11111, status: imported 'Abgesagt', current "
            f"'Erstkontakt'; kept: lead status 'Abgesagt' was {not_created}"]
    assert await status_of(sessions, 11111) == "Erstkontakt"
    forced = await load(sessions, document, overwrite=True)
    assert lines(forced, Action.CONFLICT) == []
    assert lines(forced, Action.CREATED) == ["created     tenant 'xyz', lead status 'Abgesagt'"]
    assert await statuses(sessions) == [("Erstkontakt", "open", 0), ("Gewonnen", "won", 0),
                                        ("Verloren", "lost", 0), ("Abgesagt", "lost", 1)]
    assert not await load(sessions, document)


async def test_a_kind_set_in_the_crm_is_kept_and_the_files_other_kinds_applied(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await load(sessions, factories.directory())

    async def change(library: StatusLibrary) -> None:
        await library.set_kind("Verloren", "open")
        await library.add("Angebot", "open")  # made in the CRM, never imported
    await through_statuses(sessions, change)
    document = factories.directory()
    tenant = document["tenants"][0]
    tenant["lead_statuses"][1]["kind"] = "lost"  # changed in the file only
    tenant["lead_statuses"].append({"name": "Angebot", "kind": "won"})
    report = await load(sessions, document)
    assert said(report) == [
        "changed     tenant 'xyz', lead status 'Gewonnen': kind",
        f"conflict    tenant 'xyz', lead status 'Verloren', kind: imported 'lost', current "
        f"'open'; {KEPT}",
        "conflict    tenant 'xyz', lead status 'Angebot', kind: imported 'won', current "
        "'open'; kept: set in the CRM, never imported"]
    assert await statuses(sessions) == [("Erstkontakt", "open", 1), ("Gewonnen", "lost", 0),
                                        ("Verloren", "open", 0), ("Angebot", "open", 0)]
    forced = await load(sessions, document, overwrite=True)
    assert lines(forced, Action.OVERWRITTEN) == [
        "overwritten tenant 'xyz', lead status 'Verloren', kind: imported 'lost', was 'open'",
        "overwritten tenant 'xyz', lead status 'Angebot', kind: imported 'won', was 'open'"]
    assert [kind for _, kind, _ in await statuses(sessions)] == ["open", "lost", "lost", "won"]
    assert not await load(sessions, document)


async def test_a_reorder_in_the_crm_is_kept_and_reported_once(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await load(sessions, factories.directory())
    await through_statuses(sessions, lambda library: library.reorder(
        ["Gewonnen", "Erstkontakt", "Verloren"]))
    report = await load(sessions, factories.directory())
    assert said(report) == [
        "conflict    tenant 'xyz', lead_statuses order: imported 'Erstkontakt, Gewonnen, "
        f"Verloren', current 'Gewonnen, Erstkontakt, Verloren'; {KEPT}"]
    assert report.counts == Counter({"conflict": 1})
    # A status new in the file comes after all the file puts before it, in the CRM's order.
    document = factories.directory()
    document["tenants"][0]["lead_statuses"].insert(1, {"name": "Angebot", "kind": "open"})
    assert said(await load(sessions, document)) == [
        *said(report), "created     tenant 'xyz', lead status 'Angebot'"]
    assert [name for name, _, _ in await statuses(sessions)] == [
        "Gewonnen", "Erstkontakt", "Angebot", "Verloren"]
    forced = await load(sessions, document, overwrite=True)
    assert said(forced) == [
        "changed     tenant 'xyz': lead_statuses order",
        "overwritten tenant 'xyz', lead_statuses order: imported 'Erstkontakt, Angebot, "
        "Gewonnen, Verloren', was 'Gewonnen, Erstkontakt, Angebot, Verloren'"]
    assert [name for name, _, _ in await statuses(sessions)] == [
        "Erstkontakt", "Angebot", "Gewonnen", "Verloren"]
    # Reordered in the file only: applied.
    document["tenants"][0]["lead_statuses"].reverse()
    assert said(await load(sessions, document)) == [
        "changed     tenant 'xyz': lead_statuses order"]
    assert [name for name, _, _ in await statuses(sessions)] == [
        "Verloren", "Gewonnen", "Angebot", "Erstkontakt"]


async def test_a_status_added_in_the_crm_keeps_its_place(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """Statuses the file does not name stay where they are; the file orders its own
    statuses in the places they hold."""
    await load(sessions, factories.directory())
    await through_statuses(sessions, lambda library: library.add("Angebot", "open", 2))
    assert not await load(sessions, factories.directory())
    assert [name for name, _, _ in await statuses(sessions)] == [
        "Erstkontakt", "Angebot", "Gewonnen", "Verloren"]
    document = factories.directory()
    document["tenants"][0]["lead_statuses"].reverse()
    await load(sessions, document)
    assert [name for name, _, _ in await statuses(sessions)] == [
        "Verloren", "Angebot", "Gewonnen", "Erstkontakt"]


async def test_a_status_deleted_in_the_crm_is_not_created_again(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """Its leads were moved to a replacement in the CRM: they stay there, each with a
    conflict; a new lead the file gives that status gets the first open one."""
    document = factories.directory()
    tenant = document["tenants"][0]
    tenant["leads"][0]["status"] = "Verloren"
    await load(sessions, document)
    await through_statuses(sessions, lambda library: library.delete("Verloren", "Erstkontakt"))
    tenant["leads"].append({"number": 11112, "name": "Wartung", "company": "acme",
                            "status": "Verloren"})
    deleted = "lead status 'Verloren' was deleted in the CRM since the last import"
    for _ in range(2):  # the second import does not take it for new
        assert said(await load(sessions, document)) == [
            "conflict    tenant 'xyz', lead status 'Verloren': deleted in the CRM since the "
            "last import; not created again",
            "conflict    tenant 'xyz', lead 11111, status: imported 'Verloren', current "
            f"'Erstkontakt'; kept: {deleted}",
            "created     tenant 'xyz', lead 11112",
            "conflict    tenant 'xyz', lead 11112, status: imported 'Verloren', current "
            f"'Erstkontakt'; kept: {deleted}; it got the first open status"]
        assert await statuses(sessions) == [("Erstkontakt", "open", 2), ("Gewonnen", "won", 0)]
        async with writing(sessions) as session:
            await session.execute(delete(Lead).where(Lead.number == 11112))
    tenant["leads"].pop()
    forced = await load(sessions, document, overwrite=True)
    assert said(forced) == [
        "created     tenant 'xyz', lead status 'Verloren'",
        "overwritten tenant 'xyz', lead status 'Verloren': created again; it was deleted in the "
        "CRM since the last import",
        "changed     tenant 'xyz', lead 11111: status",
        "overwritten tenant 'xyz', lead 11111, status: imported 'Verloren', was 'Erstkontakt'"]
    assert await statuses(sessions) == [("Erstkontakt", "open", 0), ("Gewonnen", "won", 0),
                                        ("Verloren", "lost", 1)]
    assert not await load(sessions, document)


async def test_tenant_settings_set_in_the_crm_are_kept(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """`tenants set-review` and `set-sender-policy`; the name is the file's alone."""
    await load(sessions, factories.directory())

    async def set_tenant(**values: Any) -> None:
        async with writing(sessions) as session:
            await session.execute(update(Tenant).values(**values))

    async def settings() -> tuple[str, str, str]:
        async with sessions() as session:
            tenant = await session.scalar(select(Tenant))
            assert tenant is not None
            return tenant.name, tenant.review.value, tenant.sender_policy.value
    # What the file left out was the default: setting it in the file later is no conflict.
    document = factories.directory(review="all", sender_policy="dkim")
    assert said(await load(sessions, document)) == [
        "changed     tenant 'xyz': review, sender_policy"]
    await set_tenant(review=ReviewPolicy.UNCERTAIN, name="Renamed")
    document = factories.directory(review="all", sender_policy="header")
    report = await load(sessions, document)
    assert said(report) == [
        "changed     tenant 'xyz': name, sender_policy",
        f"conflict    tenant 'xyz', review: imported 'all', current 'uncertain'; {KEPT}"]
    assert await settings() == ("XYZ GmbH", "uncertain", "header")
    # A file that leaves review out leaves it to the CRM; naming it again, the conflict too.
    assert not await load(sessions, factories.directory(sender_policy="header"))
    assert lines(await load(sessions, document), Action.CONFLICT) == said(report)[1:]
    forced = await load(sessions, document, overwrite=True)
    assert lines(forced, Action.OVERWRITTEN) == [
        "overwritten tenant 'xyz', review: imported 'all', was 'uncertain'"]
    assert await settings() == ("XYZ GmbH", "all", "header")
    assert not await load(sessions, document)


async def test_statuses_and_tenants_from_before_0005_take_the_file_as_before(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await load(sessions, factories.directory(review="all"))

    async def change(library: StatusLibrary) -> None:
        await library.set_kind("Verloren", "open")
        await library.reorder(["Verloren", "Gewonnen", "Erstkontakt"])
    await through_statuses(sessions, change)
    async with writing(sessions) as session:
        await session.execute(update(Tenant).values(imported={}, review=ReviewPolicy.UNCERTAIN))
        await session.execute(update(LeadStatus).values(imported={}))
    report = await load(sessions, factories.directory(review="all"))
    assert said(report) == ["changed     tenant 'xyz': review, lead_statuses order",
                            "changed     tenant 'xyz', lead status 'Verloren': kind"]
    assert await statuses(sessions) == [("Erstkontakt", "open", 1), ("Gewonnen", "won", 0),
                                        ("Verloren", "lost", 0)]
