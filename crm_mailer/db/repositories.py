"""Data access for ingestion: every query is scoped to one tenant; sessions are passed in."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from crm_mailer.db.models import (
    Company,
    CompanyDomain,
    Contact,
    HistoryEntry,
    HistoryParticipant,
    InboundMessage,
    Lead,
    PendingMatch,
    Project,
    SenderDomain,
    Tenant,
    TenantHost,
)
from crm_mailer.mail.addresses import address_domain
from crm_mailer.matching.facts import (
    CompanyRef,
    ContactRef,
    MatchInput,
    RecordKind,
    RecordRef,
    TenantFacts,
)

_CHUNK = 500  # keeps IN lists far below SQLite's bound-parameter limit
T = TypeVar("T")


def _chunks(items: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


@dataclass(frozen=True, slots=True)
class TenantRef:
    id: int
    slug: str


async def tenants_for_hosts(session: AsyncSession, hosts: Iterable[str]) -> dict[str, TenantRef]:
    """Map each registered host among `hosts` to its tenant."""
    wanted = sorted(set(hosts))
    if not wanted:
        return {}
    rows = await session.execute(
        select(TenantHost.host, Tenant.id, Tenant.slug)
        .join(Tenant, Tenant.id == TenantHost.tenant_id)
        .where(TenantHost.host.in_(wanted))
    )
    return {host: TenantRef(tenant_id, slug) for host, tenant_id, slug in rows}


async def tenant_by_slug(session: AsyncSession, slug: str) -> Tenant | None:
    return (await session.execute(select(Tenant).where(Tenant.slug == slug))).scalar_one_or_none()


async def load_facts(session: AsyncSession, tenant: TenantRef, match: MatchInput) -> TenantFacts:
    """Load what matching may need for this message, for this tenant only."""
    message = match.message
    addresses = sorted({a for a in (match.sender, *message.to, *message.cc) if a})
    domains = sorted({address_domain(a) for a in addresses})
    hosts = frozenset((await session.scalars(
        select(TenantHost.host).where(TenantHost.tenant_id == tenant.id))).all())
    sender_domains = frozenset((await session.scalars(
        select(SenderDomain.domain).where(SenderDomain.tenant_id == tenant.id))).all())

    contacts: dict[str, ContactRef] = {}
    for chunk in _chunks(addresses):
        for row in await session.execute(
            select(Contact.id, Contact.email, Contact.company_id)
            .where(Contact.tenant_id == tenant.id, Contact.email.in_(chunk))
        ):
            contacts[row.email] = ContactRef(row.id, row.email, row.company_id)

    domain_companies: dict[str, int] = {}
    for chunk in _chunks(domains):
        for domain, company_id in await session.execute(
            select(CompanyDomain.domain, CompanyDomain.company_id)
            .where(CompanyDomain.tenant_id == tenant.id, CompanyDomain.domain.in_(chunk))
        ):
            domain_companies[domain] = company_id

    leads = await _records(session, Lead, RecordKind.LEAD, tenant.id, match.numbers)
    projects = await _records(session, Project, RecordKind.PROJECT, tenant.id, match.numbers)

    company_ids = sorted({*domain_companies.values(),
                          *(c.company_id for c in contacts.values() if c.company_id),
                          *(r.company_id for r in (*leads.values(), *projects.values())
                            if r.company_id)})
    companies: dict[int, CompanyRef] = {}
    for id_chunk in _chunks(company_ids):
        for company_id, key in await session.execute(
            select(Company.id, Company.key)
            .where(Company.tenant_id == tenant.id, Company.id.in_(id_chunk))
        ):
            companies[company_id] = CompanyRef(company_id, key)

    return TenantFacts(
        tenant_id=tenant.id,
        slug=tenant.slug,
        hosts=hosts,
        sender_domains=sender_domains,
        contacts=contacts,
        company_domains={d: companies[c] for d, c in domain_companies.items() if c in companies},
        companies=companies,
        leads=leads,
        projects=projects,
    )


async def _records(session: AsyncSession, model: type[Lead] | type[Project], kind: RecordKind,
                   tenant_id: int, numbers: Sequence[int]) -> dict[int, RecordRef]:
    found: dict[int, RecordRef] = {}
    for chunk in _chunks(numbers):
        for row in await session.execute(
            select(model.id, model.number, model.company_id)
            .where(model.tenant_id == tenant_id, model.number.in_(chunk))
        ):
            found[row.number] = RecordRef(kind, row.id, row.number, row.company_id)
    return found


async def insert_message_once(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """Insert the message unless (tenant, Message-ID) exists; its new id, or None if it did.

    The unique key decides, not a prior SELECT: two concurrent deliveries of one
    message cannot both get in.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(InboundMessage)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["tenant_id", "message_id"])
        .returning(InboundMessage.id)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def add_history_entry(session: AsyncSession, *, tenant_id: int, message_id: int,
                            company_id: int | None, contact_id: int | None,
                            lead_id: int | None, project_id: int | None,
                            participant_ids: Sequence[int], filed_by: str) -> HistoryEntry:
    entry = HistoryEntry(tenant_id=tenant_id, inbound_message_id=message_id,
                         company_id=company_id, contact_id=contact_id, lead_id=lead_id,
                         project_id=project_id, filed_by=filed_by)
    session.add(entry)
    await session.flush()
    session.add_all(HistoryParticipant(history_entry_id=entry.id, contact_id=contact_id_,
                                       position=position)
                    for position, contact_id_ in enumerate(dict.fromkeys(participant_ids)))
    return entry


async def add_pending_match(session: AsyncSession, *, tenant_id: int, message_id: int,
                            reasons: Sequence[str],
                            candidates: dict[str, list[Any]]) -> PendingMatch:
    pending = PendingMatch(tenant_id=tenant_id, inbound_message_id=message_id,
                           reasons=list(reasons), candidates=candidates)
    session.add(pending)
    await session.flush()
    return pending
