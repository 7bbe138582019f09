"""Data access for ingestion: every query is scoped to one tenant; sessions are passed in."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    and_,
    bindparam,
    cast,
    false,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import CompoundSelect

from crm_mailer.db.models import (
    Company,
    CompanyDomain,
    Contact,
    HistoryEntry,
    HistoryParticipant,
    InboundMessage,
    Lead,
    LeadStatus,
    MessageChunk,
    PendingMatch,
    PendingState,
    Project,
    ReviewPolicy,
    SenderDomain,
    StatusKind,
    Tenant,
    TenantHost,
    utcnow,
)
from crm_mailer.mail.addresses import address_domain
from crm_mailer.mail.proof import SenderPolicy, registrable_domain
from crm_mailer.matching.decide import Filed
from crm_mailer.matching.facts import (
    CompanyRef,
    ContactRef,
    MatchInput,
    RecordKind,
    RecordRef,
    TenantFacts,
    ThreadRef,
    ThreadState,
)
from crm_mailer.matching.subject import strip_prefixes, word_runs, words

# Values per IN list: the facts statement binds three such lists, at most 1,506 parameters,
# far below SQLite's limit (32,766 since 3.32).
_CHUNK = 500
_NOTHING: Sequence[Any] = ()
T = TypeVar("T")


def _chunks(items: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


PENDING_CHANNEL = "crm_mailer_pending"


@dataclass(frozen=True, slots=True)
class TenantRef:
    id: int
    slug: str
    review: ReviewPolicy = ReviewPolicy.UNCERTAIN
    sender_policy: SenderPolicy = SenderPolicy.ALIGNED


# The statements of the per-message path are built once: constructing and keying a
# SQLAlchemy statement costs more than running it. Values come as bound parameters.
_TENANT: BindParameter[int] = bindparam("tenant_id")
_VALUES: BindParameter[Any] = bindparam("values", expanding=True)
_TENANTS_FOR_HOSTS = (
    select(TenantHost.host, Tenant.id, Tenant.slug, Tenant.review, Tenant.sender_policy)
    .join(Tenant, Tenant.id == TenantHost.tenant_id)
    .where(TenantHost.host.in_(_VALUES))
)
# What matching needs first, in one round trip: the tenant's own hosts and sender domains,
# the contacts with the message's addresses, the companies with its domains, and the
# leads and projects with its subject numbers. One row shape for all of them:
# (kind, id, text, number, company id, company key).
_NO_TEXT = cast(null(), String)
_NO_ID = cast(null(), Integer)
_NO_NUMBER = cast(null(), BigInteger)
_EMAILS: BindParameter[Any] = bindparam("emails", expanding=True)
_DOMAINS: BindParameter[Any] = bindparam("domains", expanding=True)
_NUMBERS: BindParameter[Any] = bindparam("numbers", expanding=True)
# Which columns are set depends on the kind: Any, checked by kind when read.
_FACTS: CompoundSelect[str, Any, Any, Any, Any, Any] = (
    union_all(
        select(literal("host"), _NO_ID, TenantHost.host, _NO_NUMBER, _NO_ID, _NO_TEXT)
        .where(TenantHost.tenant_id == _TENANT),
        select(literal("sender"), _NO_ID, SenderDomain.domain, _NO_NUMBER, _NO_ID, _NO_TEXT)
        .where(SenderDomain.tenant_id == _TENANT),
        select(literal("contact"), Contact.id, Contact.email, _NO_NUMBER, Contact.company_id,
               Company.key)
        .outerjoin(Company, Company.id == Contact.company_id)
        .where(Contact.tenant_id == _TENANT, Contact.email.in_(_EMAILS)),
        select(literal("domain"), _NO_ID, CompanyDomain.domain, _NO_NUMBER, Company.id,
               Company.key)
        .join(Company, Company.id == CompanyDomain.company_id)
        .where(CompanyDomain.tenant_id == _TENANT, CompanyDomain.domain.in_(_DOMAINS)),
        *(select(literal(kind.value), model.id, _NO_TEXT, model.number, model.company_id,
                 Company.key)
          .outerjoin(Company, Company.id == model.company_id)
          .where(model.tenant_id == _TENANT, model.number.in_(_NUMBERS))
          for kind, model in ((RecordKind.LEAD, Lead), (RecordKind.PROJECT, Project))),
    )
)
# Open leads and active projects (every project but the sales project), with their names:
# what a subject can name and what a company's single open lead is.
_OPEN_RECORDS = union_all(
    select(literal(RecordKind.LEAD.value), Lead.id, Lead.number, Lead.company_id, Company.key,
           Lead.name)
    .join(LeadStatus, LeadStatus.id == Lead.status_id)
    .outerjoin(Company, Company.id == Lead.company_id)
    .where(Lead.tenant_id == _TENANT, LeadStatus.kind == StatusKind.OPEN,
           or_(Lead.name_key.in_(bindparam("names", expanding=True)),
               Lead.company_id.in_(bindparam("companies", expanding=True)))),
    select(literal(RecordKind.PROJECT.value), Project.id, Project.number, Project.company_id,
           Company.key, Project.name)
    .outerjoin(Company, Company.id == Project.company_id)
    .where(Project.tenant_id == _TENANT, Project.is_sales_project == false(),
           or_(Project.name_key.in_(bindparam("names", expanding=True)),
               Project.company_id.in_(bindparam("companies", expanding=True)))),
)
# Where the messages a reply refers to went: filed (with its lead or project), or waiting.
_THREADS = (
    select(InboundMessage.message_id, HistoryEntry.id, HistoryEntry.company_id,
           Lead.id, Lead.number, Lead.company_id, Project.id, Project.number,
           Project.company_id, PendingMatch.state, PendingMatch.candidates)
    .outerjoin(HistoryEntry, HistoryEntry.inbound_message_id == InboundMessage.id)
    .outerjoin(Lead, Lead.id == HistoryEntry.lead_id)
    .outerjoin(Project, Project.id == HistoryEntry.project_id)
    .outerjoin(PendingMatch, and_(PendingMatch.inbound_message_id == InboundMessage.id,
                                  PendingMatch.state == PendingState.WAITING))
    .where(InboundMessage.tenant_id == _TENANT, InboundMessage.message_id.in_(_VALUES))
)
NAME_WORDS = 8  # names of more words are found among the mail's own companies' records only
_INSERT_MESSAGE = {
    dialect.__name__.rpartition(".")[2]: (
        dialect.insert(InboundMessage)
        .on_conflict_do_nothing(index_elements=["tenant_id", "message_id"])
        .returning(InboundMessage.id))
    for dialect in (postgresql, sqlite)
}
_INSERT_ENTRY = insert(HistoryEntry).returning(HistoryEntry.id)
_INSERT_PARTICIPANT = insert(HistoryParticipant)
_INSERT_PENDING = insert(PendingMatch).returning(PendingMatch.id)
_NOTIFY = select(func.pg_notify(PENDING_CHANNEL, bindparam("payload")))


async def tenants_for_hosts(session: AsyncSession, hosts: Iterable[str]) -> dict[str, TenantRef]:
    """Map each registered host among `hosts` to its tenant."""
    wanted = sorted(set(hosts))
    if not wanted:
        return {}
    connection = await session.connection()
    rows = await connection.execute(_TENANTS_FOR_HOSTS, {"values": wanted})
    return {host: TenantRef(tenant_id, slug, review, policy)
            for host, tenant_id, slug, review, policy in rows}


async def any_tenant(session: AsyncSession) -> bool:
    """True when at least one tenant is registered."""
    return await session.scalar(select(Tenant.id).limit(1)) is not None


async def tenant_by_slug(session: AsyncSession, slug: str) -> Tenant | None:
    return (await session.execute(select(Tenant).where(Tenant.slug == slug))).scalar_one_or_none()


async def load_facts(session: AsyncSession, tenant: TenantRef, match: MatchInput) -> TenantFacts:
    """Load what matching may need for this message, for this tenant only: one
    statement, and two more only when no subject number found a record."""
    message = match.message
    connection = await session.connection()  # Core round trips: no ORM layer needed here
    original = message.forwarded  # a forward's original may name the customer (rule 9)
    forwarded = (original.from_address, *original.to, *original.cc) if original else ()
    addresses = sorted({a for a in (match.sender, *message.to, *message.cc, *forwarded) if a})
    # A host under a company's domain is that company's: ask for both the domain and its
    # registrable domain (Public Suffix List).
    domains = sorted({d for a in addresses
                      for d in (address_domain(a), registrable_domain(address_domain(a))) if d})
    companies: dict[int, CompanyRef] = {}

    def company(company_id: int | None, key: str | None) -> None:
        if company_id is not None and key is not None:
            companies.setdefault(company_id, CompanyRef(company_id, key))

    hosts: set[str] = set()
    sender_domains: set[str] = set()
    contacts: dict[str, ContactRef] = {}
    company_domains: dict[str, CompanyRef] = {}
    records: dict[RecordKind, dict[int, RecordRef]] = {RecordKind.LEAD: {},
                                                       RecordKind.PROJECT: {}}
    # One statement for all of it; more only for more values than one statement binds
    # (the own hosts and domains come again with each: sets, read once).
    chunks = list(itertools.zip_longest(_chunks(addresses), _chunks(domains),
                                        _chunks(match.numbers), fillvalue=_NOTHING))
    for emails, domain_chunk, numbers in chunks or [((), (), ())]:
        rows = await connection.execute(_FACTS, {
            "tenant_id": tenant.id, "emails": list(emails), "domains": list(domain_chunk),
            "numbers": list(numbers)})
        for kind, row_id, text, number, company_id, key in rows:
            if kind == "host":
                hosts.add(text)
            elif kind == "sender":
                sender_domains.add(text)
            elif kind == "contact":
                contacts[text] = ContactRef(row_id, text, company_id)
                company(company_id, key)
            elif kind == "domain":
                company(company_id, key)
                company_domains[text] = companies[company_id]
            else:
                record_kind = RecordKind(kind)
                records[record_kind][number] = RecordRef(record_kind, row_id, number,
                                                         company_id)
                company(company_id, key)

    # The thread, name and single-lead steps only look when no subject number found a
    # record: only then (not on the common path of a number) are their facts loaded.
    threads: dict[str, ThreadRef] = {}
    named: list[RecordRef] = []
    company_records: dict[int, list[RecordRef]] = {}
    if not any(records.values()):
        threads = await _threads(connection, tenant.id, message.references)
        # Names: every run of subject words (a name found anywhere in the tenant is at
        # least a candidate), and every open record of the companies it can belong to.
        runs = word_runs(words(strip_prefixes(message.subject)), NAME_WORDS)
        company_ids = sorted(companies)
        if runs or company_ids:
            for kind_name, record_id, number, company_id, key, name in \
                    await connection.execute(_OPEN_RECORDS, {
                        "tenant_id": tenant.id, "names": runs or [""],
                        "companies": company_ids or [-1]}):
                record = RecordRef(RecordKind(kind_name), record_id, number, company_id, name)
                if company_id in companies:
                    company_records.setdefault(company_id, []).append(record)
                else:
                    company(company_id, key)
                named.append(record)

    return TenantFacts(
        tenant_id=tenant.id,
        slug=tenant.slug,
        sender_policy=tenant.sender_policy,
        hosts=frozenset(hosts),
        sender_domains=frozenset(sender_domains),
        contacts=contacts,
        company_domains=company_domains,
        companies=companies,
        leads=records[RecordKind.LEAD],
        projects=records[RecordKind.PROJECT],
        threads=threads,
        named=tuple(named),
        company_records={k: tuple(v) for k, v in company_records.items()},
    )


async def _threads(connection: Any, tenant_id: int,
                   references: Sequence[str]) -> dict[str, ThreadRef]:
    """The referenced messages of this tenant that were filed or still wait."""
    found: dict[str, ThreadRef] = {}
    for chunk in _chunks(list(dict.fromkeys(references))):
        for (message_id, entry_id, entry_company, lead_id, lead_number, lead_company,
             project_id, project_number, project_company, state, candidates) in \
                await connection.execute(_THREADS, {"tenant_id": tenant_id,
                                                    "values": list(chunk)}):
            if entry_id is not None:
                record = (RecordRef(RecordKind.LEAD, lead_id, lead_number, lead_company)
                          if lead_id is not None else
                          RecordRef(RecordKind.PROJECT, project_id, project_number,
                                    project_company) if project_id is not None else None)
                found[message_id] = ThreadRef(message_id, ThreadState.FILED, record,
                                              entry_company)
            elif state is not None:
                found[message_id] = ThreadRef(message_id, ThreadState.WAITING,
                                              candidates=candidates or {})
    return found


async def insert_message_once(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """Insert the message unless (tenant, Message-ID) exists; its new id, or None if it did.

    The unique key decides, not a prior SELECT: two concurrent deliveries of one
    message cannot both get in.
    """
    statement = _INSERT_MESSAGE[session.get_bind().dialect.name]
    connection = await session.connection()
    values.setdefault("error", None)
    values.setdefault("ignored", None)
    for column in ("envelope_sender", "sender"):  # never fail on a value that cannot fit
        values[column] = fit(values[column], _ADDRESS_COLUMN)
    raw: bytes = values["raw"]
    chunked = len(raw) > RAW_CHUNK
    if chunked:
        values = {**values, "raw": b"", "raw_chunks": -(-len(raw) // RAW_CHUNK)}
    row_id: int | None = (await connection.execute(statement, values)).scalar_one_or_none()
    if row_id is not None and chunked:
        view = memoryview(raw)
        for seq, start in enumerate(range(0, len(raw), RAW_CHUNK)):
            await connection.execute(_INSERT_CHUNK, {
                "inbound_message_id": row_id, "seq": seq,
                "data": bytes(view[start:start + RAW_CHUNK])})
    return row_id


# Drivers copy a value whole, some more than once (asyncpg's buffer, SQLite's record):
# a large message goes in slices so that storing it costs little more than holding it.
RAW_CHUNK = 1 << 20
_INSERT_CHUNK = insert(MessageChunk)


async def raw_message(session: AsyncSession, message: InboundMessage) -> bytes:
    """The message's bytes as received, from the row or from its chunks."""
    if not message.raw_chunks:
        return message.raw
    chunks = await session.scalars(select(MessageChunk.data)
                                   .where(MessageChunk.inbound_message_id == message.id)
                                   .order_by(MessageChunk.seq))
    return b"".join(chunks)


_ADDRESS_COLUMN = 320


def fit(text: str, length: int) -> str:
    """`text` if it fits `length` characters, else its start and a hash of the whole."""
    if len(text) <= length:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{text[:length - 18]}~{digest}"


async def add_history_entry(session: AsyncSession, *, tenant_id: int, message_id: int,
                            company_id: int | None, contact_id: int | None,
                            lead_id: int | None, project_id: int | None,
                            participant_ids: Sequence[int], filed_by: str) -> int:
    """Insert a history entry and its participants; returns the entry's id.

    Core inserts, not the unit of work: this runs for every filed message.
    """
    connection = await session.connection()
    entry_id: int = (await connection.execute(_INSERT_ENTRY, {
        "tenant_id": tenant_id, "inbound_message_id": message_id, "company_id": company_id,
        "contact_id": contact_id, "lead_id": lead_id, "project_id": project_id,
        "filed_by": filed_by, "filed_at": utcnow()})).scalar_one()
    participants = [{"history_entry_id": entry_id, "contact_id": contact, "position": position}
                    for position, contact in enumerate(dict.fromkeys(participant_ids))]
    if participants:
        await connection.execute(_INSERT_PARTICIPANT, participants)
    return entry_id


async def file_decision(session: AsyncSession, tenant_id: int, message_id: int,
                        decision: Filed, *, filed_by: str) -> int:
    """Write the history entry for a certain match."""
    is_lead = decision.record.kind is RecordKind.LEAD
    return await add_history_entry(
        session, tenant_id=tenant_id, message_id=message_id,
        company_id=decision.company.id, contact_id=decision.contact.id,
        lead_id=decision.record.id if is_lead else None,
        project_id=None if is_lead else decision.record.id,
        participant_ids=[c.id for c in decision.participants], filed_by=filed_by)


async def add_pending_match(session: AsyncSession, *, tenant: TenantRef, message_id: int,
                            reasons: Sequence[str],
                            candidates: dict[str, list[Any]]) -> int:
    """Queue a mail for a person; on PostgreSQL the main app hears of it at commit."""
    connection = await session.connection()
    pending_id: int = (await connection.execute(_INSERT_PENDING, {
        "tenant_id": tenant.id, "inbound_message_id": message_id, "reasons": list(reasons),
        "candidates": candidates, "state": PendingState.WAITING,
        "created_at": utcnow()})).scalar_one()
    if connection.dialect.name == "postgresql":
        # NOTIFY is transactional: delivered on commit, never for a rolled-back insert.
        payload = json.dumps({"tenant": tenant.slug, "id": pending_id})
        await connection.execute(_NOTIFY, {"payload": payload})
    return pending_id
