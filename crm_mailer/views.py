"""Read-outs of filed and waiting mail as plain dicts: the shape the CLI and the main app see."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, case, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, defer

from crm_mailer.db.models import (
    Company,
    Contact,
    HistoryEntry,
    HistoryParticipant,
    InboundMessage,
    Lead,
    PendingMatch,
    PendingState,
    Project,
    fits,
)


def message_fields(message: InboundMessage) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "direction": message.direction.value if message.direction else None,
        "error": message.error,
        "subject": message.subject,
        "sender": message.sender,
        "to": message.recipients_to,
        "cc": message.recipients_cc,
        "sent_at": message.sent_at.isoformat(),
        "received_at": message.received_at.isoformat(),
        "attachments": message.attachments,
    }


async def list_history(session: AsyncSession, tenant_id: int, *, limit: int | None = None,
                       offset: int = 0, lead: int | None = None,
                       project: int | None = None,
                       entry_id: int | None = None) -> list[dict[str, Any]]:
    """The tenant's contact-history entries, oldest first.

    `lead` and `project` filter by number; a project's history includes the mail filed
    on the lead it was converted from.
    """
    if not all(fits(column, value) for column, value in (
            (Lead.number, lead), (Project.number, project), (HistoryEntry.id, entry_id))
            if value is not None):
        return []  # no record can have it
    contact = aliased(Contact)
    converted = aliased(Lead)
    query = (
        select(HistoryEntry, Company.key, contact.email, Lead.number, Project.number)
        .join(InboundMessage, InboundMessage.id == HistoryEntry.inbound_message_id)
        .outerjoin(Company, Company.id == HistoryEntry.company_id)
        .outerjoin(contact, contact.id == HistoryEntry.contact_id)
        .outerjoin(Lead, Lead.id == HistoryEntry.lead_id)
        .outerjoin(Project, Project.id == HistoryEntry.project_id)
        .where(HistoryEntry.tenant_id == tenant_id)
        .order_by(HistoryEntry.id)
        .offset(offset)
        .limit(limit)
    )
    if entry_id is not None:
        query = query.where(HistoryEntry.id == entry_id)
    if lead is not None:
        query = query.where(Lead.number == lead)
    if project is not None:
        project_id = (select(Project.id)
                      .where(Project.tenant_id == tenant_id, Project.number == project)
                      .scalar_subquery())
        query = query.where(or_(
            HistoryEntry.project_id == project_id,
            HistoryEntry.lead_id.in_(select(converted.id).where(
                converted.tenant_id == tenant_id, converted.project_id == project_id))))
    rows = (await session.execute(query)).all()
    participants: dict[int, list[str]] = {}
    ids = [row[0].id for row in rows]
    if ids:
        for entry_id, email in await session.execute(
            select(HistoryParticipant.history_entry_id, Contact.email)
            .join(Contact, Contact.id == HistoryParticipant.contact_id)
            .where(HistoryParticipant.history_entry_id.in_(ids))
            .order_by(HistoryParticipant.history_entry_id, HistoryParticipant.position)
        ):
            participants.setdefault(entry_id, []).append(email)
    return [
        {
            "id": entry.id,
            **message_fields(entry.message),
            "company": company_key,
            "contact": contact_email,
            "participants": participants.get(entry.id, []),
            "lead": lead_number,
            "project": project_number,
            "filed_by": entry.filed_by,
            "filed_at": entry.filed_at.isoformat(),
            "body": entry.message.body,
        }
        for entry, company_key, contact_email, lead_number, project_number in rows
    ]


async def list_pending(session: AsyncSession, tenant_id: int, *, include_resolved: bool = False,
                       limit: int | None = None, offset: int = 0,
                       pending_id: int | None = None) -> list[dict[str, Any]]:
    """The tenant's pending matches, newest first; only waiting ones unless asked."""
    if pending_id is not None and not fits(PendingMatch.id, pending_id):
        return []  # no item can have it
    query = select(PendingMatch).where(PendingMatch.tenant_id == tenant_id)
    if pending_id is not None:
        query = query.where(PendingMatch.id == pending_id)
    if not include_resolved:
        query = query.where(PendingMatch.state == PendingState.WAITING)
    query = query.order_by(PendingMatch.id.desc()).offset(offset).limit(limit)
    return [
        {
            "id": pending.id,
            **message_fields(pending.message),
            "state": pending.state.value,
            "reasons": pending.reasons,
            "candidates": pending.candidates,
            "created_at": pending.created_at.isoformat(),
            "resolved_by": pending.resolved_by,
            "resolved_at": pending.resolved_at.isoformat() if pending.resolved_at else None,
            "note": pending.note,
            "body": pending.message.body,
        }
        for pending in (await session.scalars(query)).all()
    ]


# What became of a received message, in the order that decides: a history entry (a filed
# mail may also wait for a review), the machine-mail reason, the queue item's state. The
# view crm_messages (migration 0007) reads it the same way.
OUTCOMES = ("filed", "queued", "ignored", "refused", "expired")
OUTCOME: ColumnElement[str | None] = case(
    (HistoryEntry.id.is_not(None), "filed"),
    (InboundMessage.ignored.is_not(None), "ignored"),
    (PendingMatch.state == PendingState.WAITING, "queued"),
    (PendingMatch.state == PendingState.REJECTED, "refused"),
    (PendingMatch.state == PendingState.EXPIRED, "expired"),
)


async def list_messages(session: AsyncSession, tenant_id: int, *, outcome: str | None = None,
                        limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    """The tenant's received messages, newest first, each with its outcome and reasons.

    `outcome` keeps only messages with that outcome (one of OUTCOMES).
    """
    query = (
        select(InboundMessage, OUTCOME, HistoryEntry.id, PendingMatch.id, PendingMatch.reasons,
               PendingMatch.note)
        .outerjoin(HistoryEntry, HistoryEntry.inbound_message_id == InboundMessage.id)
        .outerjoin(PendingMatch, PendingMatch.inbound_message_id == InboundMessage.id)
        .where(InboundMessage.tenant_id == tenant_id)
        .options(defer(InboundMessage.raw), defer(InboundMessage.body))
        .order_by(InboundMessage.id.desc())
        .offset(offset)
        .limit(limit)
    )
    if outcome is not None:
        query = query.where(OUTCOME == outcome)
    rows = (await session.execute(query)).all()
    return [
        {
            "id": message.id,
            **message_fields(message),
            "outcome": found,
            "reasons": [message.ignored.value] if message.ignored is not None else
            reasons if reasons is not None else [],
            "machine": _machine_evidence(message) if message.ignored is not None else None,
            "note": note,
            "history": entry_id,
            "pending": pending_id,
        }
        for message, found, entry_id, pending_id, reasons, note in rows
    ]


def _machine_evidence(message: InboundMessage) -> dict[str, Any] | None:
    """The header and value that showed a machine wrote the message, as the step found them."""
    for evidence in message.evidence:
        if evidence.get("step") == "machine" and "header" in evidence:
            return {"header": evidence["header"], "value": evidence.get("value")}
    return None
