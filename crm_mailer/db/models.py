"""The data model (SQLAlchemy 2, typed declarative). Every row belongs to exactly one tenant."""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from crm_mailer.mail.machine import MachineReason
from crm_mailer.mail.proof import SenderPolicy
from crm_mailer.matching.facts import Direction
from crm_mailer.matching.subject import name_key

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """An aware datetime stored as UTC; SQLite, which keeps no zone, reads back aware too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware one is required")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# What an integer column can hold, by its type (BigInteger first: it is an Integer).
_INTEGER_BOUNDS: tuple[tuple[type[Integer], int], ...] = ((BigInteger, 2**63), (Integer, 2**31))


def fits(column: Any, value: int) -> bool:
    """Whether the integer column `column` can hold `value`. PostgreSQL refuses even to
    compare a column with a value past its type, so a lookup by such an ID or number is
    answered "no such record" without asking it (SQLite would simply find nothing)."""
    for kind, bound in _INTEGER_BOUNDS:
        if isinstance(column.type, kind):
            return -bound <= value < bound
    return True


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class StatusKind(enum.StrEnum):
    """Where a lead status stands in the sales process."""

    OPEN = "open"
    WON = "won"
    LOST = "lost"


class ReviewPolicy(enum.StrEnum):
    """Which new mail a person checks: only uncertain mail, or every mail (filed and shown)."""

    UNCERTAIN = "uncertain"
    ALL = "all"


class PendingState(enum.StrEnum):
    """Where a pending match stands in the confirmation queue."""

    WAITING = "waiting"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    EXPIRED = "expired"


def _enum(kind: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings with a CHECK: portable across PostgreSQL and SQLite.
    return Enum(kind, name=name, native_enum=False, create_constraint=True, length=16,
                values_callable=lambda members: [m.value for m in members])


class Imported:
    """A record the import file can name: `imported` holds what the file gave it last time,
    in the file's terms (company key, contact email, status name, revenues by month; a
    tenant's review and sender policy and its statuses' names in order), so a re-import
    tells a change made in the CRM since from one made in the file.

    None: the import never wrote the record (the library made it). `{}`: imported before
    crm_mailer kept these values; every field then counts as last imported as it is now.
    """

    imported: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Tenant(Imported, Base):
    """A company using the CRM."""

    __tablename__ = "tenants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    review: Mapped[ReviewPolicy] = mapped_column(
        _enum(ReviewPolicy, "review_policy"), default=ReviewPolicy.UNCERTAIN,
        server_default=ReviewPolicy.UNCERTAIN.value)
    sender_policy: Mapped[SenderPolicy] = mapped_column(
        _enum(SenderPolicy, "sender_policy"), default=SenderPolicy.ALIGNED,
        server_default=SenderPolicy.ALIGNED.value)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class TenantHost(Base):
    """A host name whose crm@ address delivers to the tenant; a host belongs to one tenant."""

    __tablename__ = "tenant_hosts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    host: Mapped[str] = mapped_column(String(253), unique=True)


class SenderDomain(Base):
    """A mail domain of the tenant's own people: mail from it is outbound."""

    __tablename__ = "sender_domains"
    __table_args__ = (UniqueConstraint("tenant_id", "domain"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    domain: Mapped[str] = mapped_column(String(253))


class LeadStatus(Imported, Base):
    """A step of the tenant's sales process ("Standardwerte"), ordered by position."""

    __tablename__ = "lead_statuses"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[StatusKind] = mapped_column(_enum(StatusKind, "status_kind"))
    position: Mapped[int] = mapped_column(Integer)


class SalesAction(Base):
    """A sales campaign ("Vertriebsaktion") a lead can belong to."""

    __tablename__ = "sales_actions"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))


class Company(Imported, Base):
    """A customer or prospect of the tenant."""

    __tablename__ = "companies"
    __table_args__ = (UniqueConstraint("tenant_id", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))


class CompanyDomain(Base):
    """A mail domain that identifies one company within its tenant."""

    __tablename__ = "company_domains"
    __table_args__ = (UniqueConstraint("tenant_id", "domain"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    domain: Mapped[str] = mapped_column(String(253))


class Contact(Imported, Base):
    """A person at a company ("Ansprechpartner"), found by exact mail address."""

    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    company_id: Mapped[int | None] = mapped_column(
        ForeignKey("companies.id", ondelete="SET NULL"), index=True
    )
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(255), default="")


class Project(Imported, Base):
    """A project, often created from a won lead; numbered per tenant."""

    __tablename__ = "projects"
    __table_args__ = (
        UniqueConstraint("tenant_id", "number"),
        Index("uq_projects_sales_project", "tenant_id", unique=True,
              postgresql_where=text("is_sales_project"), sqlite_where=text("is_sales_project")),
        Index("ix_projects_tenant_id_name_key", "tenant_id", "name_key"),
        Index("ix_projects_tenant_id_company_id", "tenant_id", "company_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(255))
    # The name as a subject is searched for it (matching.subject.name_key), kept in step.
    name_key: Mapped[str] = mapped_column(String(1024), nullable=True, default="")
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id", ondelete="SET NULL"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    # The tenant's one sales project, where people book sales time per customer (FAQ).
    is_sales_project: Mapped[bool] = mapped_column(default=False, server_default=false())

    @validates("name")
    def _keep_name_key(self, _: str, name: str) -> str:
        self.name_key = name_key(name)
        return name


class ProjectTask(Base):
    """A task within a project; the sales project has one per customer company."""

    __tablename__ = "project_tasks"
    __table_args__ = (UniqueConstraint("project_id", "company_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))


class Lead(Imported, Base):
    """A sales opportunity ("Vertriebsprojekt"); numbered per tenant."""

    __tablename__ = "leads"
    __table_args__ = (UniqueConstraint("tenant_id", "number"),
                      Index("ix_leads_tenant_id_name_key", "tenant_id", "name_key"),
                      Index("ix_leads_tenant_id_company_id", "tenant_id", "company_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(255))
    name_key: Mapped[str] = mapped_column(String(1024), nullable=True, default="")  # as on Project
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id", ondelete="SET NULL"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    status_id: Mapped[int] = mapped_column(ForeignKey("lead_statuses.id", ondelete="RESTRICT"))
    sales_action_id: Mapped[int | None] = mapped_column(
        ForeignKey("sales_actions.id", ondelete="SET NULL")
    )
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"))
    planned_revenues: Mapped[list[PlannedRevenue]] = relationship(
        back_populates="lead", cascade="all, delete-orphan", order_by="PlannedRevenue.month"
    )

    @validates("name")
    def _keep_name_key(self, _: str, name: str) -> str:
        self.name_key = name_key(name)
        return name


class PlannedRevenue(Base):
    """A lead's planned net revenue ("Planumsatz") for one month."""

    __tablename__ = "planned_revenues"
    __table_args__ = (UniqueConstraint("lead_id", "month"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    month: Mapped[dt.date] = mapped_column(Date)  # always the first of the month
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2, asdecimal=True))
    lead: Mapped[Lead] = relationship(back_populates="planned_revenues")


class InboundMessage(Base):
    """One received message for one tenant: the raw bytes and what was read from them."""

    __tablename__ = "inbound_messages"
    __table_args__ = (UniqueConstraint("tenant_id", "message_id"),
                      Index("ix_inbound_messages_tenant", "tenant_id", "id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(320))
    message_id_derived: Mapped[bool] = mapped_column(default=False)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    envelope_sender: Mapped[str] = mapped_column(String(320), default="")
    envelope_recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    # None while the message is unprocessable: it was never matched.
    direction: Mapped[Direction | None] = mapped_column(_enum(Direction, "direction"))
    sender: Mapped[str] = mapped_column(String(320))
    recipients_to: Mapped[list[str]] = mapped_column(JSON, default=list)
    recipients_cc: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    body: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # The Message-ID keys it replies to, nearest first (mail.thread): rematch follows the
    # thread without parsing again. NULL for mail stored before 0006.
    thread_references: Mapped[list[str] | None] = mapped_column(JSON, default=list)
    # A forward's original, as mail.forward read it (rule 9 needs its sender on rematch).
    forwarded: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The message as received; a large one is kept in MessageChunk rows instead (raw is
    # then empty and raw_chunks says how many), so no database driver copies it whole.
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    raw_chunks: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Why the message could not be read or matched (then it waits as `unprocessable`).
    error: Mapped[str | None] = mapped_column(Text)
    # Set for machine mail (an auto-reply, a report, list traffic): kept with this reason,
    # neither filed nor queued. Every other outcome follows from the history entry or the
    # queue item (crm_mailer.views.OUTCOME).
    ignored: Mapped[MachineReason | None] = mapped_column(_enum(MachineReason, "machine_reason"))


class MessageChunk(Base):
    """One slice, in order, of a large received message's bytes."""

    __tablename__ = "message_chunks"
    inbound_message_id: Mapped[int] = mapped_column(
        ForeignKey("inbound_messages.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class HistoryEntry(Base):
    """A filed mail in a company's contact history ("Kontakthistorie")."""

    __tablename__ = "history_entries"
    __table_args__ = (Index("ix_history_entries_tenant", "tenant_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbound_message_id: Mapped[int] = mapped_column(
        ForeignKey("inbound_messages.id", ondelete="CASCADE"), unique=True
    )
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id", ondelete="SET NULL"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    lead_id: Mapped[int | None] = mapped_column(
        ForeignKey("leads.id", ondelete="SET NULL"), index=True
    )
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL"), index=True
    )
    filed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    filed_by: Mapped[str] = mapped_column(String(255), default="crm-mailer")
    message: Mapped[InboundMessage] = relationship(lazy="joined")


class HistoryParticipant(Base):
    """A contact who took part in a filed mail (every matched recipient or sender)."""

    __tablename__ = "history_participants"
    history_entry_id: Mapped[int] = mapped_column(
        ForeignKey("history_entries.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)


class PendingMatch(Base):
    """A mail waiting for a person to confirm where it belongs, with reasons and candidates."""

    __tablename__ = "pending_matches"
    __table_args__ = (Index("ix_pending_matches_tenant_state", "tenant_id", "state"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    inbound_message_id: Mapped[int] = mapped_column(
        ForeignKey("inbound_messages.id", ondelete="CASCADE"), unique=True
    )
    state: Mapped[PendingState] = mapped_column(
        _enum(PendingState, "pending_state"), default=PendingState.WAITING
    )
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    candidates: Mapped[dict[str, list[Any]]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_by: Mapped[str | None] = mapped_column(String(255))
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(Text)  # a rejection's reason
    message: Mapped[InboundMessage] = relationship(lazy="joined")


class HistoryChange(Base):
    """Audit of a correction to a filed entry: who moved it, when, from what to what."""

    __tablename__ = "history_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    history_entry_id: Mapped[int] = mapped_column(
        ForeignKey("history_entries.id", ondelete="CASCADE"), index=True)
    changed_by: Mapped[str] = mapped_column(String(255))
    changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    before: Mapped[dict[str, Any]] = mapped_column(JSON)
    after: Mapped[dict[str, Any]] = mapped_column(JSON)
