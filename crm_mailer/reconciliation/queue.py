"""The confirmation queue of one tenant: what a person sees and decides.

Deciding is a compare-and-set on the item's state (UPDATE ... WHERE state = 'waiting'), so
of two people confirming the same mail exactly one wins, on either backend. Filing the
entry and resolving the item happen in the caller's one transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_mailer.db import repositories
from crm_mailer.db.models import (
    Company,
    CompanyDomain,
    Contact,
    HistoryChange,
    HistoryEntry,
    HistoryParticipant,
    InboundMessage,
    Lead,
    PendingMatch,
    PendingState,
    Project,
    ReviewPolicy,
    Tenant,
    fits,
    utcnow,
)
from crm_mailer.errors import Conflict, InvalidRequest, NotFound
from crm_mailer.leads.scope import Lookup, TenantScope
from crm_mailer.mail.addresses import address_domain
from crm_mailer.mail.forward import ForwardedOriginal
from crm_mailer.mail.parse import ParsedMessage
from crm_mailer.matching import pipeline
from crm_mailer.matching.decide import REASON_TEXT, Filed, Queued, Reason
from crm_mailer.matching.facts import PROVEN_AT_RECEIPT, MatchInput
from crm_mailer.matching.number import subject_numbers
from crm_mailer.reconciliation.filing import Placement, place
from crm_mailer.views import list_history, list_pending

REMATCH_BY = "crm-mailer (rematch)"
EXPIRE_BY = "crm-mailer (expired)"
PREVIEW_CHARS = 2000


@dataclass(frozen=True, slots=True)
class RematchReport:
    filed: int = 0
    updated: int = 0
    unchanged: int = 0

    def summary(self) -> str:
        return f"{self.filed} filed, {self.updated} updated, {self.unchanged} unchanged"


class ReconciliationQueue:
    """Pending mail of one tenant; each deciding call is atomic, the caller commits."""

    def __init__(self, session: AsyncSession, tenant: TenantScope) -> None:
        self.session, self.tenant = session, tenant
        self.lookup = Lookup(session, tenant)

    # --- reading -------------------------------------------------------------------------

    async def list_pending(self, *, include_resolved: bool = False, limit: int | None = 50,
                   offset: int = 0) -> list[dict[str, Any]]:
        """Waiting items (all with `include_resolved`), newest first, a page at a time."""
        return await list_pending(self.session, self.tenant.id,
                                  include_resolved=include_resolved, limit=limit, offset=offset)

    async def show(self, pending_id: int) -> dict[str, Any]:
        """Everything a person needs to decide: the mail, the reasons in words, and every
        candidate with why it is one."""
        rows = await list_pending(self.session, self.tenant.id, include_resolved=True,
                                  pending_id=pending_id)
        if not rows:
            raise NotFound(f"no pending mail {pending_id} in tenant '{self.tenant.slug}'")
        item = rows[0]
        body = item.pop("body")
        item["preview"] = body[:PREVIEW_CHARS] + ("…" if len(body) > PREVIEW_CHARS else "")
        item["reasons"] = [{"code": code, "text": _reason_text(code)} for code in item["reasons"]]
        item["candidates"] = await self._explain(item)
        item["evidence"] = await self.session.scalar(
            select(InboundMessage.evidence).where(InboundMessage.tenant_id == self.tenant.id,
                                                  InboundMessage.message_id
                                                  == item["message_id"])) or []
        filed = await self._entry_for_message(item["message_id"])
        item["filed"] = (await list_history(self.session, self.tenant.id,
                                            entry_id=filed.id))[0] if filed else None
        return item

    async def _explain(self, item: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        candidates = item["candidates"]
        sender, to, cc = item["sender"], item["to"], item["cc"]
        roles = {**{a: "recipient (Cc)" for a in cc}, **{a: "recipient (To)" for a in to},
                 sender: "sender"}
        explained: dict[str, list[dict[str, Any]]] = {"leads": [], "projects": [],
                                                      "contacts": [], "companies": []}
        company_why: dict[str, list[str]] = {key: [] for key in candidates.get("companies", [])}
        for kind, model in (("leads", Lead), ("projects", Project)):
            for number in candidates.get(kind, []):
                row = (await self.session.execute(
                    select(model.name, Company.key)
                    .outerjoin(Company, Company.id == model.company_id)
                    .where(model.tenant_id == self.tenant.id, model.number == number))).first()
                name, key = row if row else (None, None)
                explained[kind].append({"number": number, "name": name, "company": key,
                                        "why": f"the subject holds the number {number}"})
                if key in company_why:
                    company_why[key].append(f"company of {kind[:-1]} {number}")
        for email in candidates.get("contacts", []):
            person = (await self.session.execute(
                select(Contact.name, Company.key)
                .outerjoin(Company, Company.id == Contact.company_id)
                .where(Contact.tenant_id == self.tenant.id, Contact.email == email))).first()
            name, key = person if person else (None, None)
            explained["contacts"].append({"email": email, "name": name, "company": key,
                                          "why": f"{roles.get(email, 'address')} of the mail"})
            if key in company_why:
                company_why[key].append(f"company of contact {email}")
        domains = {address_domain(a): a for a in (*cc, *to, sender) if a}
        for key in candidates.get("companies", []):
            firm = (await self.session.execute(
                select(Company.id, Company.name).where(Company.tenant_id == self.tenant.id,
                                                       Company.key == key))).first()
            if firm is not None:
                for (domain,) in await self.session.execute(
                        select(CompanyDomain.domain).where(CompanyDomain.company_id == firm.id)):
                    if domain in domains:
                        company_why[key].insert(0, f"domain of {domains[domain]}")
            explained["companies"].append({"key": key, "name": firm.name if firm else None,
                                           "why": "; ".join(company_why[key]) or "seen"})
        return explained

    async def _entry_for_message(self, message_id: str) -> HistoryEntry | None:
        return await self.session.scalar(
            select(HistoryEntry).join(InboundMessage)
            .where(HistoryEntry.tenant_id == self.tenant.id,
                   InboundMessage.message_id == message_id))

    # --- deciding ------------------------------------------------------------------------

    async def _claim(self, pending_id: int, state: PendingState, by: str,
                     note: str | None = None) -> PendingMatch:
        """Move a waiting item to `state`, or say who decided it before."""
        if not fits(PendingMatch.id, pending_id):
            raise NotFound(f"no pending mail {pending_id} in tenant '{self.tenant.slug}'")
        claimed = await self.session.scalar(
            update(PendingMatch)
            .where(PendingMatch.id == pending_id, PendingMatch.tenant_id == self.tenant.id,
                   PendingMatch.state == PendingState.WAITING)
            .values(state=state, resolved_by=by, resolved_at=utcnow(), note=note)
            .returning(PendingMatch.id)
            .execution_options(synchronize_session=False))
        pending = await self.session.scalar(
            select(PendingMatch).where(PendingMatch.id == pending_id,
                                       PendingMatch.tenant_id == self.tenant.id)
            .execution_options(populate_existing=True))
        if pending is None:
            raise NotFound(f"no pending mail {pending_id} in tenant '{self.tenant.slug}'")
        if claimed is None:
            when = pending.resolved_at.strftime("%Y-%m-%d %H:%M:%S UTC") \
                if pending.resolved_at else "an unknown time"
            raise Conflict(f"pending mail {pending_id} was already {pending.state.value} by "
                           f"{pending.resolved_by or 'someone'} at {when}")
        return pending

    async def confirm(self, pending_id: int, *, by: str, lead: int | None = None,
                      project: int | None = None, contact: str | None = None,
                      company: str | None = None) -> dict[str, Any]:
        """File the mail: the suggested match, or what the person chose or corrected.
        Returns the history entry."""
        async with self.session.begin_nested():
            pending = await self._claim(pending_id, PendingState.CONFIRMED, by)
            candidates = pending.candidates
            entry = await self.session.scalar(
                select(HistoryEntry)
                .where(HistoryEntry.inbound_message_id == pending.inbound_message_id)
                .with_for_update(of=HistoryEntry).execution_options(populate_existing=True))
            if entry is not None:  # filed already (review = all): accept, or correct it
                if (lead, project, contact, company) != (None,) * 4:
                    await self._correct(entry, by=by, lead=lead, project=project,
                                        contact=contact, company=company)
                return (await list_history(self.session, self.tenant.id, entry_id=entry.id))[0]
            if lead is None and project is None:
                records = [("lead", n) for n in candidates.get("leads", [])] + \
                          [("project", n) for n in candidates.get("projects", [])]
                if len(records) > 1:
                    listed = ", ".join(f"{kind} {number}" for kind, number in records)
                    raise InvalidRequest(f"several candidates ({listed}): choose the lead "
                                         "or project")
                if records:
                    kind, number = records[0]
                    lead, project = (number, None) if kind == "lead" else (None, number)
            placement = await place(self.lookup, company=company, contact=contact, lead=lead,
                                    project=project,
                                    suggested_contacts=candidates.get("contacts", []),
                                    suggested_companies=candidates.get("companies", []))
            entry_id = await self._file(pending.inbound_message_id, placement, by,
                                        candidates.get("contacts", []))
        return (await list_history(self.session, self.tenant.id, entry_id=entry_id))[0]

    async def reject(self, pending_id: int, *, by: str,
                     reason: str | None = None) -> dict[str, Any]:
        """Do not file the mail; it is kept for audit with who rejected it and why."""
        async with self.session.begin_nested():
            await self._claim(pending_id, PendingState.REJECTED, by, note=reason)
        return (await list_pending(self.session, self.tenant.id, include_resolved=True,
                                   pending_id=pending_id))[0]

    async def move(self, entry_id: int, *, by: str, lead: int | None = None,
                   project: int | None = None, contact: str | None = None) -> dict[str, Any]:
        """Correct a filed entry: another lead, project or contact (the company follows)."""
        if (lead, project, contact) == (None, None, None):
            raise InvalidRequest("nothing to move: give a lead, a project or a contact")
        if not fits(HistoryEntry.id, entry_id):
            raise NotFound(f"no history entry {entry_id} in tenant '{self.tenant.slug}'")
        async with self.session.begin_nested():
            entry = await self.session.scalar(
                select(HistoryEntry).where(HistoryEntry.id == entry_id,
                                           HistoryEntry.tenant_id == self.tenant.id)
                .with_for_update(of=HistoryEntry).execution_options(populate_existing=True))
            if entry is None:
                raise NotFound(f"no history entry {entry_id} in tenant '{self.tenant.slug}'")
            await self._correct(entry, by=by, lead=lead, project=project, contact=contact)
        return (await list_history(self.session, self.tenant.id, entry_id=entry_id))[0]

    async def _correct(self, entry: HistoryEntry, *, by: str, lead: int | None,
                       project: int | None, contact: str | None,
                       company: str | None = None) -> None:
        """Re-place a filed entry; what is not given stays, if it still fits."""
        before = await self._placement_of(entry)
        if lead is None and project is None and \
                await self._still_fits(before["lead"], before["project"], company):
            lead, project = before["lead"], before["project"]
        placement = await place(
            self.lookup, company=company, contact=contact, lead=lead, project=project,
            suggested_contacts=[before["contact"]] if before["contact"] else [],
            suggested_companies=[before["company"]] if before["company"] else [])
        await self._move(entry, placement, by)

    async def _still_fits(self, lead: int | None, project: int | None,
                          company: str | None) -> bool:
        """True when the entry's lead or project belongs to `company` (or none is named)."""
        if company is None:
            return True
        if lead is None and project is None:
            return False
        record = await (self.lookup.lead(lead) if lead is not None
                        else self.lookup.project(project or 0))
        return record.company_id == (await self.lookup.company(company)).id

    async def _file(self, message_row_id: int, placement: Placement, by: str,
                    participants: Sequence[str]) -> int:
        participant_ids = [c.id for c in await self.session.scalars(select(Contact).where(
            Contact.tenant_id == self.tenant.id, Contact.email.in_(list(participants))))]
        if placement.contact is not None:
            participant_ids.insert(0, placement.contact.id)
        return await repositories.add_history_entry(
            self.session, tenant_id=self.tenant.id, message_id=message_row_id,
            company_id=placement.company.id,
            contact_id=placement.contact.id if placement.contact else None,
            lead_id=placement.lead.id if placement.lead else None,
            project_id=placement.project.id if placement.project else None,
            participant_ids=participant_ids, filed_by=by)

    async def _placement_of(self, entry: HistoryEntry) -> dict[str, Any]:
        rows = await list_history(self.session, self.tenant.id, entry_id=entry.id)
        return {key: rows[0][key] for key in ("company", "contact", "lead", "project")}

    async def _move(self, entry: HistoryEntry, placement: Placement, by: str) -> None:
        before = await self._placement_of(entry)
        after = placement.as_json()
        if before == after:
            return
        entry.company_id = placement.company.id
        entry.contact_id = placement.contact.id if placement.contact else None
        entry.lead_id = placement.lead.id if placement.lead else None
        entry.project_id = placement.project.id if placement.project else None
        entry.filed_by = by  # who placed it where it is now; history_changes has the rest
        if placement.contact is not None and await self.session.get(
                HistoryParticipant, (entry.id, placement.contact.id)) is None:
            self.session.add(HistoryParticipant(history_entry_id=entry.id,
                                                contact_id=placement.contact.id, position=-1))
        self.session.add(HistoryChange(tenant_id=self.tenant.id, history_entry_id=entry.id,
                                       changed_by=by, before=before, after=after))
        await self.session.flush()

    # --- after directory changes ---------------------------------------------------------

    async def rematch(self) -> RematchReport:
        """Match every waiting mail again; the ones now certain are filed."""
        tenant = await self.session.get_one(Tenant, self.tenant.id)
        ref = repositories.TenantRef(tenant.id, tenant.slug, tenant.review, tenant.sender_policy)
        filed = updated = unchanged = 0
        # Locked as read: a person's confirm or reject waits for us and then finds the item
        # decided; one they committed first leaves it out of this list.
        waiting = (await self.session.scalars(
            select(PendingMatch).where(PendingMatch.tenant_id == tenant.id,
                                       PendingMatch.state == PendingState.WAITING)
            .order_by(PendingMatch.id).with_for_update(of=PendingMatch)
            .execution_options(populate_existing=True))).all()
        for pending in waiting:
            if Reason.REVIEW.value in pending.reasons:  # filed already, waits for a check
                unchanged += 1
                continue
            match = _match_input(pending.message)
            facts = await repositories.load_facts(self.session, ref, match)
            decision = pipeline.run(match, facts).decision
            if isinstance(decision, Filed):
                async with self.session.begin_nested():
                    await file_waiting(self.session, pending, decision, ref, by=REMATCH_BY)
                filed += 1
            elif isinstance(decision, Queued) and (
                    list(decision.reasons) != pending.reasons
                    or decision.candidates != pending.candidates):
                pending.reasons = [r.value for r in decision.reasons]
                pending.candidates = decision.candidates
                updated += 1
            else:
                unchanged += 1
        await self.session.flush()
        return RematchReport(filed, updated, unchanged)


async def file_waiting(session: AsyncSession, pending: PendingMatch, decision: Filed,
                       tenant: repositories.TenantRef, *, by: str) -> None:
    """File a waiting mail the matcher is now certain of; it leaves the queue, unless the
    tenant reviews every mail (then it waits for that check, filed)."""
    await repositories.file_decision(session, tenant.id, pending.inbound_message_id, decision,
                                     filed_by=by)
    if tenant.review is ReviewPolicy.ALL:
        pending.reasons = [Reason.REVIEW.value]
    else:
        pending.state = PendingState.CONFIRMED
        pending.resolved_by, pending.resolved_at = by, utcnow()


def _match_input(message: InboundMessage) -> MatchInput:
    """The stored reading of a message, as the matcher takes it (no need to parse again)."""
    parsed = ParsedMessage(
        message_id=message.message_id, message_id_derived=message.message_id_derived,
        subject=message.subject, from_address=message.sender or None,
        to=tuple(message.recipients_to), cc=tuple(message.recipients_cc),
        references=tuple(message.thread_references or ()),
        forwarded=ForwardedOriginal.from_json(message.forwarded) if message.forwarded else None,
        sent_at=message.sent_at, body="")
    return MatchInput(parsed, None, subject_numbers(message.subject), PROVEN_AT_RECEIPT)


def _reason_text(code: str) -> str:
    try:
        return REASON_TEXT[Reason(code)]
    except ValueError:
        return code


async def expire_pending(session: AsyncSession, *, older_than: dt.timedelta,
                         now: dt.datetime | None = None) -> int:
    """Mark waiting items older than `older_than` expired (kept, no longer shown); all
    tenants. Returns how many."""
    now = now or utcnow()
    expired = await session.scalars(
        update(PendingMatch)
        .where(PendingMatch.state == PendingState.WAITING,
               PendingMatch.created_at < now - older_than)
        .values(state=PendingState.EXPIRED, resolved_by=EXPIRE_BY, resolved_at=now)
        .returning(PendingMatch.id)
        .execution_options(synchronize_session=False))
    return len(expired.all())
