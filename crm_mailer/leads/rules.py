"""The rules every lead keeps, whoever changes it: the library's calls and the import.

Each rule says why a state is refused, in the user's terms, or None when it is allowed;
the library raises that text, the import reports it next to the value it kept.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from crm_mailer.db.models import Company, Contact, Lead, LeadStatus, Project, StatusKind


def converted_lead_status(project: int | None, status: str, kind: StatusKind) -> str | None:
    """A lead converted to a project keeps a won status: it counts as won in the pipeline
    and cannot be converted again, so an open or lost status would contradict its project."""
    if project is None or kind is StatusKind.WON:
        return None
    return (f"converted to project {project}, it must keep a won status, "
            f"not '{status}' ({kind.value})")


async def converted_leads_in(session: AsyncSession, status_id: int) -> list[tuple[int, int]]:
    """(lead number, project number) of the converted leads in a status, by lead number."""
    return [(lead, project) for lead, project in await session.execute(
        select(Lead.number, Project.number).join(Project, Project.id == Lead.project_id)
        .where(Lead.status_id == status_id).order_by(Lead.number))]


async def broken_records(session: AsyncSession, tenant_id: int) -> dict[str, str]:
    """Every lead and project of the tenant that breaks a rule, and why, keyed like
    "lead 11111": a converted lead that is not won, a contact not of the record's company.

    For a change that touches many records at once (an import), checked before it commits.
    """
    broken: dict[str, str] = {}
    for number, project, status, kind in await session.execute(
            select(Lead.number, Project.number, LeadStatus.name, LeadStatus.kind)
            .join(Project, Project.id == Lead.project_id)
            .join(LeadStatus, LeadStatus.id == Lead.status_id)
            .where(Lead.tenant_id == tenant_id, LeadStatus.kind != StatusKind.WON)
            .order_by(Lead.number)):
        broken[f"lead {number}"] = converted_lead_status(project, status, StatusKind(kind)) or ""
    for model, noun in ((Lead, "lead"), (Project, "project")):
        company = aliased(Company)
        for number, email, key in await session.execute(
                select(model.number, Contact.email, company.key)
                .join(Contact, Contact.id == model.contact_id)
                .outerjoin(company, company.id == model.company_id)
                .where(model.tenant_id == tenant_id,
                       Contact.company_id.is_distinct_from(model.company_id))
                .order_by(model.number)):
            owner = f"'{key}'" if key else "(it has none)"
            broken.setdefault(f"{noun} {number}",
                              f"contact '{email}' does not belong to its company {owner}")
    return broken
