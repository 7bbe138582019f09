"""Apply an import file: create or update in place, in one transaction, idempotently.

Records named in the file are created or updated; records the file does not name are
left alone (they may have mail filed on them). Lists that belong to one record - a
tenant's hosts and sender domains, a company's domains, a lead's planned revenues -
are replaced by the file's list.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crm_mailer.db.models import (
    Base,
    Company,
    CompanyDomain,
    Contact,
    Lead,
    LeadStatus,
    PlannedRevenue,
    Project,
    SalesAction,
    SenderDomain,
    StatusKind,
    Tenant,
    TenantHost,
)
from crm_mailer.directory.spec import TenantSpec
from crm_mailer.errors import DirectoryImportError

M = TypeVar("M", bound=Base)


class ImportReport(Counter[str]):
    """Counts of created and updated records, keyed like 'contact created'."""

    def summary(self) -> str:
        return ", ".join(f"{n} {key}" for key, n in sorted(self.items())) or "nothing changed"


def _assign(report: ImportReport, kind: str, row: Base, values: dict[str, Any]) -> None:
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    if changed:
        report[f"{kind} updated"] += 1


async def _existing(session: AsyncSession, model: type[M], tenant_id: int,
                    key: str) -> dict[Any, M]:
    rows = await session.scalars(select(model).where(model.tenant_id == tenant_id))  # type: ignore[attr-defined]
    return {getattr(row, key): row for row in rows}


async def _replace_values(session: AsyncSession, report: ImportReport, kind: str,
                          model: type[Base], column: str, wanted: Iterable[str],
                          **owner: int) -> None:
    """Make the set of `column` values for the owner equal to `wanted`."""
    rows = list(await session.scalars(select(model).filter_by(**owner)))
    wanted_set = set(wanted)
    for row in rows:
        if getattr(row, column) not in wanted_set:
            await session.delete(row)
            report[f"{kind} removed"] += 1
    have = {getattr(row, column) for row in rows}
    for value in wanted:
        if value not in have:
            session.add(model(**owner, **{column: value}))
            report[f"{kind} created"] += 1
    await session.flush()


class _Resolver:
    """Turns the file's references (company keys, contact emails) into row ids, or says why not."""

    def __init__(self, where: str, companies: dict[str, Company],
                 contacts: dict[str, Contact]) -> None:
        self.where, self.companies, self.contacts = where, companies, contacts

    def company_id(self, key: str | None, context: str) -> int | None:
        if key is None:
            return None
        if key not in self.companies:
            raise DirectoryImportError(f"{self.where}, {context}: company '{key}' does not exist")
        return self.companies[key].id

    def contact_id(self, email: str | None, company_id: int | None, context: str) -> int | None:
        if email is None:
            return None
        contact = self.contacts.get(email)
        if contact is None:
            raise DirectoryImportError(
                f"{self.where}, {context}: contact '{email}' does not exist")
        if contact.company_id != company_id:
            raise DirectoryImportError(
                f"{self.where}, {context}: contact '{email}' does not belong to its company")
        return contact.id


async def import_tenant(session: AsyncSession, spec: TenantSpec, report: ImportReport) -> Tenant:
    """Create or update one tenant and its directory; the caller owns the transaction."""
    where = f"tenant '{spec.slug}'"
    tenant = (await session.execute(select(Tenant).where(Tenant.slug == spec.slug))
              ).scalar_one_or_none()
    settings: dict[str, Any] = {"name": spec.name}
    if spec.review is not None:
        settings["review"] = spec.review
    if spec.sender_policy is not None:
        settings["sender_policy"] = spec.sender_policy
    if tenant is None:
        tenant = Tenant(slug=spec.slug, **settings)
        session.add(tenant)
        await session.flush()
        report["tenant created"] += 1
    else:
        _assign(report, "tenant", tenant, settings)

    taken = {host: owner for host, owner in await session.execute(
        select(TenantHost.host, Tenant.slug).join(Tenant)
        .where(TenantHost.host.in_(spec.hosts), TenantHost.tenant_id != tenant.id))}
    if taken:
        host, owner = next(iter(taken.items()))
        raise DirectoryImportError(f"{where}, host '{host}': already registered to tenant "
                                   f"'{owner}'")
    await _replace_values(session, report, "host", TenantHost, "host", spec.hosts,
                          tenant_id=tenant.id)
    await _replace_values(session, report, "sender domain", SenderDomain, "domain",
                          spec.sender_domains, tenant_id=tenant.id)
    statuses = await _import_statuses(session, tenant.id, spec, report)
    actions = await _existing(session, SalesAction, tenant.id, "name")
    for name in spec.sales_actions:
        if name not in actions:
            actions[name] = SalesAction(tenant_id=tenant.id, name=name)
            session.add(actions[name])
            report["sales action created"] += 1
    companies = await _import_companies(session, tenant.id, spec, report, where)
    resolve = _Resolver(where, companies, await _existing(session, Contact, tenant.id, "email"))
    await _import_contacts(session, tenant.id, spec, report, resolve)
    await _import_projects(session, tenant.id, spec, report, resolve)
    await _import_leads(session, tenant.id, spec, report, resolve, statuses, actions)
    await session.flush()
    return tenant


async def _import_statuses(session: AsyncSession, tenant_id: int, spec: TenantSpec,
                           report: ImportReport) -> dict[str, LeadStatus]:
    """Upsert statuses in the file's order; statuses the file omits keep their order after."""
    statuses = await _existing(session, LeadStatus, tenant_id, "name")
    for position, status in enumerate(spec.lead_statuses):
        if (row := statuses.get(status.name)) is None:
            statuses[status.name] = LeadStatus(tenant_id=tenant_id, name=status.name,
                                               kind=status.kind, position=position)
            session.add(statuses[status.name])
            report["lead status created"] += 1
        else:
            _assign(report, "lead status", row, {"kind": status.kind, "position": position})
    named = {s.name for s in spec.lead_statuses}
    unnamed = sorted((r for r in statuses.values() if r.name not in named),
                     key=lambda r: r.position)
    for offset, row in enumerate(unnamed):
        _assign(report, "lead status", row, {"position": len(spec.lead_statuses) + offset})
    return statuses


async def _import_companies(session: AsyncSession, tenant_id: int, spec: TenantSpec,
                            report: ImportReport, where: str) -> dict[str, Company]:
    companies = await _existing(session, Company, tenant_id, "key")
    for company in spec.companies:
        if (row := companies.get(company.key)) is None:
            companies[company.key] = Company(tenant_id=tenant_id, key=company.key,
                                             name=company.name)
            session.add(companies[company.key])
            report["company created"] += 1
        else:
            _assign(report, "company", row, {"name": company.name})
    await session.flush()
    in_file = {c.key for c in spec.companies}
    domain_owner = {domain: key for key, domain in await session.execute(
        select(Company.key, CompanyDomain.domain).join(Company)
        .where(CompanyDomain.tenant_id == tenant_id))}
    for company in spec.companies:
        for domain in company.domains:
            owner = domain_owner.get(domain)
            if owner is not None and owner != company.key and owner not in in_file:
                raise DirectoryImportError(f"{where}, company '{company.key}': domain "
                                           f"'{domain}' already belongs to company '{owner}'")
    for company in spec.companies:  # removals first, so a domain can move between companies
        await session.execute(delete(CompanyDomain).where(
            CompanyDomain.company_id == companies[company.key].id,
            CompanyDomain.domain.not_in(company.domains)))
    for company in spec.companies:
        await _replace_values(session, report, "company domain", CompanyDomain, "domain",
                              company.domains, tenant_id=tenant_id,
                              company_id=companies[company.key].id)
    return companies


async def _import_contacts(session: AsyncSession, tenant_id: int, spec: TenantSpec,
                           report: ImportReport, resolve: _Resolver) -> None:
    for contact in spec.contacts:
        values = {"name": contact.name,
                  "company_id": resolve.company_id(contact.company, f"contact '{contact.email}'")}
        if (row := resolve.contacts.get(contact.email)) is None:
            resolve.contacts[contact.email] = Contact(tenant_id=tenant_id, email=contact.email,
                                                      **values)
            session.add(resolve.contacts[contact.email])
            report["contact created"] += 1
        else:
            _assign(report, "contact", row, values)
    await session.flush()


async def _import_projects(session: AsyncSession, tenant_id: int, spec: TenantSpec,
                           report: ImportReport, resolve: _Resolver) -> None:
    projects = await _existing(session, Project, tenant_id, "number")
    for project in spec.projects:
        context = f"project {project.number}"
        company_id = resolve.company_id(project.company, context)
        values = {"name": project.name, "company_id": company_id,
                  "contact_id": resolve.contact_id(project.contact, company_id, context)}
        if (row := projects.get(project.number)) is None:
            session.add(Project(tenant_id=tenant_id, number=project.number, **values))
            report["project created"] += 1
        else:
            _assign(report, "project", row, values)


async def _import_leads(session: AsyncSession, tenant_id: int, spec: TenantSpec,
                        report: ImportReport, resolve: _Resolver,
                        statuses: dict[str, LeadStatus],
                        actions: dict[str, SalesAction]) -> None:
    leads = {lead.number: lead for lead in await session.scalars(
        select(Lead).where(Lead.tenant_id == tenant_id)
        .options(selectinload(Lead.planned_revenues)))}
    await session.flush()
    default_status = min((s for s in statuses.values() if s.kind is StatusKind.OPEN),
                         key=lambda s: s.position, default=None)
    for lead in spec.leads:
        context = f"{resolve.where}, lead {lead.number}"
        if lead.status is not None and lead.status not in statuses:
            raise DirectoryImportError(f"{context}: status '{lead.status}' does not exist")
        status = statuses[lead.status] if lead.status is not None else default_status
        if status is None:
            raise DirectoryImportError(f"{context}: no status given and the tenant has no "
                                       "open lead status")
        if lead.sales_action is not None and lead.sales_action not in actions:
            raise DirectoryImportError(f"{context}: sales action '{lead.sales_action}' "
                                       "does not exist")
        company_id = resolve.company_id(lead.company, f"lead {lead.number}")
        values = {
            "name": lead.name, "company_id": company_id,
            "contact_id": resolve.contact_id(lead.contact, company_id, f"lead {lead.number}"),
            "status_id": status.id,
            "sales_action_id": actions[lead.sales_action].id if lead.sales_action else None,
        }
        if (row := leads.get(lead.number)) is None:
            row = Lead(tenant_id=tenant_id, number=lead.number, planned_revenues=[], **values)
            session.add(row)
            report["lead created"] += 1
        else:
            _assign(report, "lead", row, values)
        have = {(r.month, r.amount) for r in row.planned_revenues}
        want = {(r.month, r.amount) for r in lead.planned_revenues}
        if have != want:
            # Delete the old months first: the unit of work would insert before deleting.
            row.planned_revenues.clear()
            await session.flush()
            row.planned_revenues.extend(PlannedRevenue(month=m, amount=a) for m, a in sorted(want))
            report["planned revenues replaced"] += 1
