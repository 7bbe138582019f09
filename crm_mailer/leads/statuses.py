"""Lead statuses ("Standardwerte"): the tenant's ordered steps, each open, won or lost."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm_mailer.db.models import Lead, LeadStatus, StatusKind
from crm_mailer.errors import Conflict, InvalidRequest
from crm_mailer.leads.rules import converted_lead_status, converted_leads_in
from crm_mailer.leads.scope import Lookup, TenantScope
from crm_mailer.wording import counted


@dataclass(frozen=True, slots=True)
class StatusView:
    name: str
    kind: StatusKind
    position: int
    leads: int

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind.value, "position": self.position,
                "leads": self.leads}


class StatusLibrary:
    """The status operations of one tenant; each call atomic, the caller commits."""

    def __init__(self, session: AsyncSession, tenant: TenantScope) -> None:
        self.session, self.tenant = session, tenant
        self.lookup = Lookup(session, tenant)

    async def _ordered(self) -> list[LeadStatus]:
        return list(await self.session.scalars(
            select(LeadStatus).where(LeadStatus.tenant_id == self.tenant.id)
            .order_by(LeadStatus.position, LeadStatus.id)))

    async def list_statuses(self) -> list[StatusView]:
        """The statuses in pipeline order, with how many leads each holds."""
        counts = {status_id: count for status_id, count in await self.session.execute(
            select(Lead.status_id, func.count()).where(Lead.tenant_id == self.tenant.id)
            .group_by(Lead.status_id))}
        return [StatusView(s.name, s.kind, index + 1, counts.get(s.id, 0))
                for index, s in enumerate(await self._ordered())]

    async def _renumber(self, statuses: Sequence[LeadStatus]) -> None:
        # Positions are re-dealt 0..n-1 so the order never has gaps or ties.
        for position, status in enumerate(statuses):
            status.position = position
        await self.session.flush()

    async def add(self, name: str, kind: StatusKind | str,
                  position: int | None = None) -> list[StatusView]:
        """Add a status at `position` (1-based; default: last)."""
        name = _name(name)
        try:
            kind = StatusKind(kind)
        except ValueError:
            raise InvalidRequest(f"status kind must be open, won or lost, not {kind!r}") from None
        async with self.session.begin_nested():
            await self.lookup.lock_tenant()  # one change to the status list at a time
            statuses = await self._ordered()
            if any(s.name == name for s in statuses):
                raise Conflict(f"status '{name}' exists already")
            index = len(statuses) if position is None else position - 1
            if not 0 <= index <= len(statuses):
                raise InvalidRequest(f"position must be between 1 and {len(statuses) + 1}")
            status = LeadStatus(tenant_id=self.tenant.id, name=name, kind=kind, position=index)
            self.session.add(status)
            statuses.insert(index, status)
            await self._renumber(statuses)
        return await self.list_statuses()

    async def rename(self, old: str, new: str) -> list[StatusView]:
        new = _name(new)
        async with self.session.begin_nested():
            await self.lookup.lock_tenant()  # one change to the status list at a time
            status = await self.lookup.status(old, "update")
            if new != old and await self.session.scalar(select(LeadStatus.id).where(
                    LeadStatus.tenant_id == self.tenant.id, LeadStatus.name == new)):
                raise Conflict(f"status '{new}' exists already")
            status.name = new
            await self.session.flush()
        return await self.list_statuses()

    async def set_kind(self, name: str, kind: StatusKind | str) -> list[StatusView]:
        try:
            kind = StatusKind(kind)
        except ValueError:
            raise InvalidRequest(f"status kind must be open, won or lost, not {kind!r}") from None
        async with self.session.begin_nested():
            status = await self.lookup.status(name, "update")
            await _keep_converted_leads_won(self.session, status, status.name, kind)
            status.kind = kind
            await self.session.flush()
        return await self.list_statuses()

    async def reorder(self, names: Sequence[str]) -> list[StatusView]:
        """Put the statuses in this order; every status must be named exactly once."""
        async with self.session.begin_nested():
            await self.lookup.lock_tenant()  # one change to the status list at a time
            statuses = {s.name: s for s in await self._ordered()}
            if sorted(names) != sorted(statuses) or len(set(names)) != len(names):
                missing = sorted(set(statuses) - set(names))
                unknown = sorted(set(names) - set(statuses))
                raise InvalidRequest(
                    "name every status exactly once"
                    + (f"; missing: {', '.join(missing)}" if missing else "")
                    + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
            await self._renumber([statuses[name] for name in names])
        return await self.list_statuses()

    async def delete(self, name: str, replacement: str | None = None) -> list[StatusView]:
        """Delete a status; leads in it need a `replacement` status to move to."""
        async with self.session.begin_nested():
            await self.lookup.lock_tenant()  # one change to the status list at a time
            # Locked first: a lead being set to this status meanwhile holds it (share) until
            # it commits, and is then counted below.
            status = await self.lookup.status(name, "update")
            in_use = await self.session.scalar(select(func.count()).select_from(Lead)
                                               .where(Lead.status_id == status.id)) or 0
            if replacement is not None:
                target = await self.lookup.status(replacement, "share")
                if target.id == status.id:
                    raise InvalidRequest("the replacement must be another status")
                await _keep_converted_leads_won(self.session, status, target.name, target.kind)
                await self.session.execute(update(Lead).where(Lead.status_id == status.id)
                                           .values(status_id=target.id))
            elif in_use:
                raise Conflict(f"status '{name}' is used by {counted(in_use, 'lead')}: name a "
                               "replacement status to move them to")
            await self.session.delete(status)
            await self.session.flush()
            await self._renumber(await self._ordered())
        return await self.list_statuses()


async def _keep_converted_leads_won(session: AsyncSession, status: LeadStatus, name: str,
                                    kind: StatusKind) -> None:
    """Refuse to leave the converted leads in `status` with a status `name` of `kind`."""
    if kind is not StatusKind.WON and (converted := await converted_leads_in(session,
                                                                             status.id)):
        lead, project = converted[0]
        raise InvalidRequest(f"lead {lead}: {converted_lead_status(project, name, kind)}")


def _name(name: str) -> str:
    if not name.strip():
        raise InvalidRequest("a status needs a name")
    return name.strip()
