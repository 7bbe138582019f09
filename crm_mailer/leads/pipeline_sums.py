"""Pipeline sums (the FAQ's "Lead-Pipeline"): per status, in status order, the number of
leads and the sum of their expected volumes, net.

Sums are taken in integer cents, so they are exact on SQLite too (which keeps NUMERIC
values as floating point).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_mailer.db.models import Lead, LeadStatus, PlannedRevenue, StatusKind
from crm_mailer.errors import InvalidRequest
from crm_mailer.leads.scope import Lookup, TenantScope, parse_month
from crm_mailer.wording import counted

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class PipelineRow:
    status: str
    kind: StatusKind
    leads: int
    expected_volume: Decimal

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "kind": self.kind.value, "leads": self.leads,
                "expected_volume": f"{self.expected_volume:.2f}"}


async def pipeline_sums(session: AsyncSession, tenant: TenantScope, *,
                        include_won: bool = False, include_lost: bool = False,
                        sales_action: str | None = None, company: str | None = None,
                        month_from: str | None = None,
                        month_to: str | None = None) -> list[PipelineRow]:
    """One row per status of the included kinds (open always; won and lost on request),
    statuses without leads as zero.

    With a month range, only planned revenues in that range count, and only leads with
    at least one of them.
    """
    kinds = [StatusKind.OPEN]
    kinds += [StatusKind.WON] if include_won else []
    kinds += [StatusKind.LOST] if include_lost else []
    first = parse_month(month_from) if month_from else None
    last = parse_month(month_to) if month_to else None
    if first and last and first > last:
        raise InvalidRequest(f"month range {month_from}..{month_to} is empty")

    revenue = select(PlannedRevenue.lead_id,
                     func.sum(cast(func.round(PlannedRevenue.amount * 100), BigInteger))
                     .label("cents"))
    if first is not None:
        revenue = revenue.where(PlannedRevenue.month >= first)
    if last is not None:
        revenue = revenue.where(PlannedRevenue.month <= last)  # months are stored as day 1
    per_lead = revenue.group_by(PlannedRevenue.lead_id).subquery()

    leads = (select(Lead.status_id, func.count(Lead.id).label("leads"),
                    func.coalesce(func.sum(per_lead.c.cents), 0).label("cents"))
             .where(Lead.tenant_id == tenant.id)
             .group_by(Lead.status_id))
    ranged = first is not None or last is not None
    leads = (leads.join(per_lead, per_lead.c.lead_id == Lead.id) if ranged
             else leads.outerjoin(per_lead, per_lead.c.lead_id == Lead.id))
    lookup = Lookup(session, tenant)
    if sales_action is not None:
        leads = leads.where(Lead.sales_action_id == (await lookup.sales_action(sales_action)).id)
    if company is not None:
        leads = leads.where(Lead.company_id == (await lookup.company(company)).id)
    totals = {status_id: (count, int(cents)) for status_id, count, cents
              in await session.execute(leads)}

    statuses = await session.scalars(
        select(LeadStatus).where(LeadStatus.tenant_id == tenant.id, LeadStatus.kind.in_(kinds))
        .order_by(LeadStatus.position))
    rows = []
    for status in statuses:
        count, cents = totals.get(status.id, (0, 0))
        rows.append(PipelineRow(status.name, status.kind, count, Decimal(cents) * CENT))
    return rows


def render_chart(rows: list[PipelineRow], width: int = 40) -> str:
    """Horizontal bars, one per status, scaled to the largest volume (the app's graphic)."""
    if not rows:
        return "(no statuses)\n"
    top = max(row.expected_volume for row in rows)
    label = max(len("total"), *(len(row.status) for row in rows))  # the last line's label
    amounts = [f"{row.expected_volume:,.2f}" for row in rows]
    amount_width = max(len(a) for a in amounts)
    lines = []
    for row, amount in zip(rows, amounts, strict=True):
        filled = 0 if not top else round(width * row.expected_volume / top)
        if row.expected_volume and not filled:
            filled = 1  # a non-zero volume is never drawn as nothing
        bar = "█" * filled + "·" * (width - filled)
        lines.append(f"{row.status.ljust(label)}  {bar}  {amount.rjust(amount_width)}  "
                     f"({row.leads} lead{'s' if row.leads != 1 else ''})")
    total = sum((row.expected_volume for row in rows), Decimal(0))
    lines.append(f"{'total'.ljust(label)}  {' ' * width}  {total:>{amount_width},.2f}  "
                 f"({counted(sum(row.leads for row in rows), 'lead')})")
    return "\n".join(lines) + "\n"
