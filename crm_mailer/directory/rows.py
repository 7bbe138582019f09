"""A tenant's directory records as plain values, read and written in bulk.

An import touches every record of a tenant. As ORM objects, 500,000 leads would fill the
session, and each flush walks all of it: the import grew quadratic. Here each kind is
read with one SELECT into small mutable rows, the merge changes those, and what changed
goes back as one executemany per kind (Core statements: no identity map, no session
synchronisation). Names keep their lookup key (matching.subject.name_key) in step, as
the ORM models' validators do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from crm_mailer.db.models import Company, CompanyDomain, Contact, Lead, PlannedRevenue, Project
from crm_mailer.matching.subject import name_key

CHUNK = 5_000  # ids per IN list: SQLite allows 32,766 bound values per statement

K = TypeVar("K")
T = TypeVar("T")


@dataclass(slots=True)
class CompanyRow:
    id: int
    key: str
    name: str
    imported: dict[str, Any] | None


@dataclass(slots=True)
class ContactRow:
    id: int
    email: str
    name: str
    company_id: int | None
    imported: dict[str, Any] | None


@dataclass(slots=True)
class ProjectRow:
    id: int
    number: int
    name: str
    company_id: int | None
    contact_id: int | None
    imported: dict[str, Any] | None


@dataclass(slots=True)
class LeadRow:
    id: int
    number: int
    name: str
    company_id: int | None
    contact_id: int | None
    status_id: int
    sales_action_id: int | None
    project_id: int | None
    imported: dict[str, Any] | None
    # Planned revenues, month ("2027-01") -> amount ("1200.00"), as the import file writes them.
    revenues: dict[str, str] = field(default_factory=dict)


Row = CompanyRow | ContactRow | ProjectRow | LeadRow
R = TypeVar("R", CompanyRow, ContactRow, ProjectRow, LeadRow)

COMPANIES, CONTACTS, PROJECTS, LEADS, DOMAINS, REVENUES = (
    cast(Table, model.__table__)
    for model in (Company, Contact, Project, Lead, CompanyDomain, PlannedRevenue))
# Each row kind: its table, and the column it is found by within a tenant.
TABLES: dict[type[Any], tuple[Table, str]] = {
    CompanyRow: (COMPANIES, "key"), ContactRow: (CONTACTS, "email"),
    ProjectRow: (PROJECTS, "number"), LeadRow: (LEADS, "number"),
}


def month_key(month: dt.date) -> str:
    return f"{month.year:04d}-{month.month:02d}"  # strftime's "%Y-%m", at a third of the cost


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _columns(kind: type[Row]) -> list[str]:
    return [f.name for f in fields(kind) if f.name != "revenues"]


_FIELDS = {kind: tuple(f.name for f in fields(kind)) for kind in TABLES}


def _values_of(row: Row) -> tuple[Any, ...]:
    # Shallow: the merge assigns new dicts (imported, revenues), it never changes one.
    return tuple(getattr(row, name) for name in _FIELDS[type(row)])


class Stored(Generic[K, R]):
    """The tenant's rows of one kind, by key, as read; `changed()` lists those the merge
    changed since. Rows added later (created by the import) count as not changed."""

    def __init__(self, kind: type[R], rows: Iterable[R]) -> None:
        self.by_key: dict[K, R] = {}
        self._read: dict[int, tuple[Any, ...]] = {}
        _, key = TABLES[kind]
        for row in rows:
            self.by_key[getattr(row, key)] = row
            self._read[row.id] = _values_of(row)

    def changed(self) -> list[R]:
        return [row for row in self.by_key.values()
                if row.id in self._read and _values_of(row) != self._read[row.id]]


async def load(session: AsyncSession, kind: type[R], tenant_id: int, *,
               lock: bool = False) -> Stored[Any, R]:
    """Every row of this kind of the tenant; `lock`: FOR NO KEY UPDATE until commit, which
    mail filed on a row meanwhile (its foreign key holds the row FOR KEY SHARE) passes."""
    table, _ = TABLES[kind]
    statement = select(*(table.c[name] for name in _columns(kind))).where(
        table.c.tenant_id == tenant_id)
    if lock:
        statement = statement.with_for_update(key_share=True)
    connection = await session.connection()
    rows = [kind(*values) for values in await connection.execute(statement)]
    if kind is LeadRow:
        await _read_revenues(connection, tenant_id, rows)
    return Stored(kind, rows)


async def _read_revenues(connection: AsyncConnection, tenant_id: int,
                         leads: Sequence[Row]) -> None:
    by_id = {row.id: row for row in leads if isinstance(row, LeadRow)}
    for lead_id, month, amount in await connection.execute(
            select(REVENUES.c.lead_id, REVENUES.c.month, REVENUES.c.amount)
            .join(LEADS, LEADS.c.id == REVENUES.c.lead_id)
            .where(LEADS.c.tenant_id == tenant_id).order_by(REVENUES.c.month)):
        by_id[lead_id].revenues[month_key(month)] = f"{amount:.2f}"


def _values(row: Row, names: Sequence[str]) -> dict[str, Any]:
    """These columns of the row; a lead's or project's name with its lookup key."""
    values = {name: getattr(row, name) for name in names}
    if isinstance(row, LeadRow | ProjectRow):
        values["name_key"] = name_key(row.name)
    return values


async def insert_rows(session: AsyncSession, tenant_id: int, rows: Sequence[Row]) -> None:
    """Insert new rows of one kind (their id not set yet), and set their ids."""
    if not rows:
        return
    table, key = TABLES[type(rows[0])]
    names = [name for name in _columns(type(rows[0])) if name != "id"]
    connection = await session.connection()
    by_key = {getattr(row, key): row for row in rows}
    for found, row_id in await connection.execute(
            insert(table).returning(table.c[key], table.c.id),
            [{**_values(row, names), "tenant_id": tenant_id} for row in rows]):
        by_key[found].id = row_id


async def update_rows(session: AsyncSession, rows: Sequence[Row]) -> None:
    """Write back every column of the rows the merge changed, one executemany per kind
    (never a row's key, nor a lead's project: the import changes neither)."""
    if not rows:
        return
    table, key = TABLES[type(rows[0])]
    names = [n for n in _columns(type(rows[0])) if n not in ("id", key, "project_id")]
    params = [{"row_id": row.id, **{f"new_{name}": value
                                    for name, value in _values(row, names).items()}}
              for row in rows]
    statement = update(table).where(table.c.id == bindparam("row_id")).values(
        {name.removeprefix("new_"): bindparam(name) for name in params[0] if name != "row_id"})
    connection = await session.connection()
    await connection.execute(statement, params)


async def replace_revenues(session: AsyncSession, revenues: dict[int, dict[str, str]]) -> None:
    """Make each lead's planned revenues (lead id -> month -> amount) exactly these."""
    await delete_ids(await session.connection(), REVENUES, "lead_id", list(revenues))
    await add_revenues(session, revenues)


async def add_revenues(session: AsyncSession, revenues: dict[int, dict[str, str]]) -> None:
    """Add planned revenues (lead id -> month -> amount) to leads that have none yet."""
    connection = await session.connection()
    rows = [{"lead_id": lead_id, "month": dt.date.fromisoformat(f"{month}-01"),
             "amount": Decimal(amount)}
            for lead_id, months in revenues.items() for month, amount in months.items()]
    if rows:
        await connection.execute(insert(REVENUES), rows)


async def delete_ids(connection: AsyncConnection, table: Table, column: str,
                     ids: Sequence[int]) -> None:
    for chunk in chunks(ids):
        await connection.execute(delete(table).where(table.c[column].in_(chunk)))


async def company_domains(session: AsyncSession, tenant_id: int
                          ) -> list[tuple[int, int, str]]:
    """(row id, company id, domain) of every company domain of the tenant."""
    connection = await session.connection()
    return [(row_id, company_id, domain) for row_id, company_id, domain in
            await connection.execute(select(DOMAINS.c.id, DOMAINS.c.company_id, DOMAINS.c.domain)
                                     .where(DOMAINS.c.tenant_id == tenant_id))]


async def change_company_domains(session: AsyncSession, tenant_id: int, removed: Sequence[int],
                                 added: Sequence[tuple[int, str]]) -> None:
    """Delete the domain rows `removed` (ids) first, so a domain can move between
    companies, then add (company id, domain) pairs."""
    connection = await session.connection()
    await delete_ids(connection, DOMAINS, "id", removed)
    if added:
        await connection.execute(insert(DOMAINS), [
            {"tenant_id": tenant_id, "company_id": company_id, "domain": domain}
            for company_id, domain in added])
