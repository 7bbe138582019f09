"""The directory import: idempotent, updates in place, all-or-nothing, on both backends."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from crm_mailer.db.models import Company, CompanyDomain, Contact, Lead, LeadStatus, TenantHost
from crm_mailer.directory.spec import parse_directory
from crm_mailer.errors import DirectoryImportError
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
