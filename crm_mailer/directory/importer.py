"""Apply an import file: create or update in place, in one transaction, idempotently.

Records named in the file are created or updated; records the file does not name are
left alone (they may have mail filed on them). Lists that belong to one record - a
tenant's hosts and sender domains, a company's domains - are replaced by the file's list.

A field changed in the CRM since the last import keeps the CRM's value and is reported as
a conflict, unless `overwrite` (the rule is in merge.py); a lead's planned revenues merge
month by month. Nothing stored breaks a rule of the lead library (leads.rules): a value
that would is kept as it is and reported, and a record the import would break otherwise
is an error naming the tenant and the record, with nothing applied.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from decimal import Decimal
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
from crm_mailer.directory.merge import NEVER, RecordMerge
from crm_mailer.directory.report import Action, ImportReport, ReportLine, shown
from crm_mailer.directory.spec import LeadSpec, ProjectSpec, TenantSpec
from crm_mailer.errors import DirectoryImportError
from crm_mailer.leads.rules import broken_records, converted_lead_status, converted_leads_in

__all__ = ["ImportReport", "import_directory", "import_tenant"]

M = TypeVar("M", bound=Base)

# How the tallies name each kind of record, one and many.
_PLURAL = {"lead status": "lead statuses", "sales action": "sales actions",
           "company": "companies", "contact": "contacts", "project": "projects",
           "lead": "leads"}


async def import_directory(session: AsyncSession, specs: Sequence[TenantSpec], *,
                           overwrite: bool = False) -> ImportReport:
    """Import every tenant of a file on the caller's transaction; the report says what
    changed and what conflicts. `overwrite`: the file's values win wherever they are valid."""
    report = ImportReport()
    for spec in specs:
        await import_tenant(session, spec, report, overwrite=overwrite)
    return report


async def import_tenant(session: AsyncSession, spec: TenantSpec, report: ImportReport, *,
                        overwrite: bool = False) -> Tenant:
    """Create or update one tenant and its directory; the caller owns the transaction."""
    return await _TenantImport(session, spec, report, overwrite).run()


def _assign(row: Base, values: dict[str, Any]) -> list[str]:
    """Set the attributes that differ; the names of those that did."""
    changed = []
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed.append(name)
    return changed


async def _existing(session: AsyncSession, model: type[M], tenant_id: int, key: str, *,
                    lock: bool = False) -> dict[Any, M]:
    statement: Any = select(model).where(model.tenant_id == tenant_id)  # type: ignore[attr-defined]
    if lock:  # read what the CRM holds now, and keep it so until we commit
        statement = statement.with_for_update()
    return {getattr(row, key): row for row in await session.scalars(statement)}


async def _replace_values(session: AsyncSession, model: type[Base], column: str,
                          wanted: Iterable[str], **owner: int) -> bool:
    """Make the set of `column` values for the owner equal to `wanted`; True if it changed."""
    rows = list(await session.scalars(select(model).filter_by(**owner)))
    wanted = list(wanted)
    changed = False
    for row in rows:
        if getattr(row, column) not in wanted:
            await session.delete(row)
            changed = True
    have = {getattr(row, column) for row in rows}
    for value in wanted:
        if value not in have:
            session.add(model(**owner, **{column: value}))
            changed = True
    await session.flush()
    return changed


def _month(month: dt.date) -> str:
    return month.strftime("%Y-%m")


class _TenantImport:
    """One tenant of the file, applied record kind by record kind: statuses, sales actions,
    companies, contacts, projects, leads (contacts before the leads and projects that
    refer to them: the order the lead library takes its locks in)."""

    def __init__(self, session: AsyncSession, spec: TenantSpec, report: ImportReport,
                 overwrite: bool) -> None:
        self.session, self.spec, self.report, self.overwrite = session, spec, report, overwrite
        self.where = f"tenant '{spec.slug}'"
        self.unchanged: Counter[str] = Counter()
        self.left_alone: Counter[str] = Counter()
        self.statuses: dict[str, LeadStatus] = {}
        self.actions: dict[str, SalesAction] = {}
        self.companies: dict[str, Company] = {}
        self.company_keys: dict[int, str] = {}
        self.contacts: dict[str, Contact] = {}
        self.contact_emails: dict[int, str] = {}
        self.projects: dict[int, int] = {}  # project id -> number

    def fail(self, record: str, message: str) -> DirectoryImportError:
        return DirectoryImportError(f"{self.where}, {record}: {message}")

    def add(self, action: Action, record: str = "", count: str | None = None, *,
            field: str = "", detail: str = "") -> None:
        self.report.add(ReportLine(action, self.spec.slug, record, field, detail), count)

    def merge(self, record: str, row: Company | Contact | Project | Lead) -> RecordMerge:
        return RecordMerge(self.spec.slug, record, row.imported, overwrite=self.overwrite)

    def finish(self, merge: RecordMerge, kind: str) -> None:
        if merge.report(self.report, kind):
            self.unchanged[kind] += 1

    async def run(self) -> Tenant:
        tenant = await self._tenant()
        broken_before = await broken_records(self.session, tenant.id)
        await self._statuses(tenant.id)
        await self._sales_actions(tenant.id)
        await self._companies(tenant.id)
        await self._contacts(tenant.id)
        await self._projects(tenant.id)
        await self._leads(tenant.id)
        await self.session.flush()
        for record, reason in (await broken_records(self.session, tenant.id)).items():
            if record not in broken_before:
                raise self.fail(record, f"{reason} after the import")
            self.add(Action.INVALID, record, "invalid",
                     detail=f"{reason}; so before the import: fix it in the CRM")
        for action, tally in ((Action.UNCHANGED, self.unchanged),
                              (Action.LEFT_ALONE, self.left_alone)):
            if counted := [f"{n} {kind if n == 1 else _PLURAL[kind]}"
                           for kind, n in tally.items() if n]:
                self.add(action, detail=", ".join(counted)
                         + (" not in the file" if action is Action.LEFT_ALONE else ""))
        return tenant

    # --- the tenant and its lists ----------------------------------------------------------

    async def _tenant(self) -> Tenant:
        spec = self.spec
        # The tenant's row locked first: the library allocates lead and project numbers under
        # this lock, so a lead it creates meanwhile never takes a number the file creates.
        tenant = (await self.session.execute(
            select(Tenant).where(Tenant.slug == spec.slug).with_for_update()
            .execution_options(populate_existing=True))).scalar_one_or_none()
        settings: dict[str, Any] = {"name": spec.name}
        if spec.review is not None:
            settings["review"] = spec.review
        if spec.sender_policy is not None:
            settings["sender_policy"] = spec.sender_policy
        created = tenant is None
        if tenant is None:
            tenant = Tenant(slug=spec.slug, **settings)
            self.session.add(tenant)
            await self.session.flush()
            self.add(Action.CREATED, count="tenant created")
            changed = []
        else:
            changed = _assign(tenant, settings)

        taken = {host: owner for host, owner in await self.session.execute(
            select(TenantHost.host, Tenant.slug).join(Tenant)
            .where(TenantHost.host.in_(spec.hosts), TenantHost.tenant_id != tenant.id))}
        if taken:
            host, owner = next(iter(taken.items()))
            raise self.fail(f"host '{host}'", f"already registered to tenant '{owner}'")
        if await _replace_values(self.session, TenantHost, "host", spec.hosts,
                                 tenant_id=tenant.id):
            changed.append("hosts")
        if await _replace_values(self.session, SenderDomain, "domain", spec.sender_domains,
                                 tenant_id=tenant.id):
            changed.append("sender_domains")
        if changed and not created:
            self.add(Action.CHANGED, count="tenant updated", detail=", ".join(changed))
        return tenant

    async def _statuses(self, tenant_id: int) -> None:
        """Statuses in the file's order; statuses the file omits keep their order after.
        A won status that converted leads hold stays won."""
        self.statuses = await _existing(self.session, LeadStatus, tenant_id, "name")
        for position, status in enumerate(self.spec.lead_statuses):
            record = f"lead status '{status.name}'"
            if (row := self.statuses.get(status.name)) is None:
                self.statuses[status.name] = LeadStatus(
                    tenant_id=tenant_id, name=status.name, kind=status.kind, position=position)
                self.session.add(self.statuses[status.name])
                self.add(Action.CREATED, record, "lead status created")
                continue
            kind = status.kind
            if row.kind is StatusKind.WON and kind is not StatusKind.WON and (
                    converted := await converted_leads_in(self.session, row.id)):
                lead, project = converted[0]
                self.add(Action.CONFLICT, record, "conflict", field="kind",
                         detail=f"imported {shown(kind.value)}, current 'won'; kept: lead "
                                f"{lead} was {converted_lead_status(project, row.name, kind)}")
                kind = row.kind
            self._status_changed(record, _assign(row, {"kind": kind, "position": position}))
        named = {s.name for s in self.spec.lead_statuses}
        unnamed = sorted((r for r in self.statuses.values() if r.name not in named),
                         key=lambda r: r.position)
        for offset, row in enumerate(unnamed):
            position = len(self.spec.lead_statuses) + offset
            self._status_changed(f"lead status '{row.name}'",
                                 _assign(row, {"position": position}), named=False)
        await self.session.flush()

    def _status_changed(self, record: str, changed: list[str], *, named: bool = True) -> None:
        if changed:
            self.add(Action.CHANGED, record, "lead status updated", detail=", ".join(changed))
        elif named:
            self.unchanged["lead status"] += 1

    async def _sales_actions(self, tenant_id: int) -> None:
        self.actions = await _existing(self.session, SalesAction, tenant_id, "name")
        for name in self.spec.sales_actions:
            if name in self.actions:
                self.unchanged["sales action"] += 1
                continue
            self.actions[name] = SalesAction(tenant_id=tenant_id, name=name)
            self.session.add(self.actions[name])
            self.add(Action.CREATED, f"sales action '{name}'", "sales action created")
        await self.session.flush()

    # --- companies and contacts ------------------------------------------------------------

    async def _companies(self, tenant_id: int) -> None:
        spec = self.spec
        companies = self.companies = await _existing(self.session, Company, tenant_id, "key")
        self.left_alone["company"] = len(set(companies) - {c.key for c in spec.companies})
        merges: dict[str, RecordMerge] = {}
        for company in spec.companies:
            record = f"company '{company.key}'"
            terms = {"name": company.name}
            if (row := companies.get(company.key)) is None:
                companies[company.key] = Company(tenant_id=tenant_id, key=company.key,
                                                 name=company.name, imported=terms)
                self.session.add(companies[company.key])
                self.add(Action.CREATED, record, "company created")
                continue
            merge = merges[company.key] = self.merge(record, row)
            row.name = merge.field("name", company.name, row.name)
            row.imported = terms
        await self.session.flush()
        self.company_keys = {row.id: key for key, row in companies.items()}

        in_file = {c.key for c in spec.companies}
        domains: dict[int, set[str]] = {}
        domain_owner: dict[str, str] = {}
        for key, company_id, domain in await self.session.execute(
                select(Company.key, Company.id, CompanyDomain.domain).join(Company)
                .where(CompanyDomain.tenant_id == tenant_id)):
            domains.setdefault(company_id, set()).add(domain)
            domain_owner[domain] = key
        for company in spec.companies:
            for domain in company.domains:
                owner = domain_owner.get(domain)
                if owner is not None and owner != company.key and owner not in in_file:
                    raise self.fail(f"company '{company.key}'", f"domain '{domain}' already "
                                    f"belongs to company '{owner}'")
        for company in spec.companies:  # removals first, so a domain can move between companies
            await self.session.execute(delete(CompanyDomain).where(
                CompanyDomain.company_id == companies[company.key].id,
                CompanyDomain.domain.not_in(company.domains)))
        for company in spec.companies:
            row = companies[company.key]
            await _replace_values(self.session, CompanyDomain, "domain", company.domains,
                                  tenant_id=tenant_id, company_id=row.id)
            if company.key in merges:
                if domains.get(row.id, set()) != set(company.domains):
                    merges[company.key].replaced.append("domains")
                self.finish(merges[company.key], "company")

    def company_key(self, company_id: int | None) -> str | None:
        return self.company_keys[company_id] if company_id is not None else None

    def company_id(self, key: str | None, record: str) -> int | None:
        if key is None:
            return None
        if key not in self.companies:
            raise self.fail(record, f"company '{key}' does not exist")
        return self.companies[key].id

    def contact_email(self, contact_id: int | None) -> str | None:
        return self.contact_emails[contact_id] if contact_id is not None else None

    def fits(self, email: str | None, company: str | None) -> bool:
        """Whether the contact belongs to the company (no contact fits any company)."""
        if email is None:
            return True
        return self.contacts[email].company_id == (
            self.companies[company].id if company is not None else None)

    async def _contacts(self, tenant_id: int) -> None:
        contacts = self.contacts = await _existing(self.session, Contact, tenant_id, "email",
                                                   lock=True)
        self.left_alone["contact"] = len(set(contacts) - {c.email for c in self.spec.contacts})
        for contact in self.spec.contacts:
            record = f"contact '{contact.email}'"
            company_id = self.company_id(contact.company, record)
            terms = {"name": contact.name, "company": contact.company}
            if (row := contacts.get(contact.email)) is None:
                contacts[contact.email] = Contact(tenant_id=tenant_id, email=contact.email,
                                                  name=contact.name, company_id=company_id,
                                                  imported=terms)
                self.session.add(contacts[contact.email])
                self.add(Action.CREATED, record, "contact created")
                continue
            merge = self.merge(record, row)
            row.name = merge.field("name", contact.name, row.name)
            company = merge.field("company", contact.company, self.company_key(row.company_id))
            row.company_id = self.company_id(company, record)
            row.imported = terms
            self.finish(merge, "contact")
        await self.session.flush()
        self.contact_emails = {row.id: email for email, row in contacts.items()}

    # --- projects and leads ----------------------------------------------------------------

    def check_contact(self, record: str, email: str | None, company: str | None) -> None:
        """The file's own contact must exist and be of the file's company for the record."""
        if email is None:
            return
        if email not in self.contacts:
            raise self.fail(record, f"contact '{email}' does not exist")
        if not self.fits(email, company):
            raise self.fail(record, f"contact '{email}' does not belong to its company")

    def merge_pair(self, merge: RecordMerge, record: str, spec: LeadSpec | ProjectSpec,
                   row: Lead | Project) -> None:
        """Company and contact, each by the rule, and together: the contact belongs to the
        company. Where one is kept from the CRM and the other would not fit it, both stay."""
        company_now, contact_now = self.company_key(row.company_id), self.contact_email(
            row.contact_id)
        company = merge.field("company", spec.company, company_now)
        contact = merge.field("contact", spec.contact, contact_now)
        if not self.fits(contact, company):
            if not self.fits(contact_now, company_now):
                raise self.fail(record, f"contact '{contact_now}', kept from the CRM, would no "
                                f"longer belong to its company '{company_now}': make the file "
                                "agree with the CRM, or import with --overwrite")
            merge.keep("company", f"the contact {shown(contact_now)}, kept from the CRM, is "
                                  f"not of company {shown(company)}")
            merge.keep("contact", f"it is not of the company {shown(company_now)}, kept from "
                                  "the CRM")
            company, contact = company_now, contact_now
        row.company_id = self.company_id(company, record)
        row.contact_id = self.contacts[contact].id if contact is not None else None

    async def _projects(self, tenant_id: int) -> None:
        projects = await _existing(self.session, Project, tenant_id, "number", lock=True)
        self.projects = {row.id: number for number, row in projects.items()}
        self.left_alone["project"] = len(set(projects) - {p.number for p in self.spec.projects})
        for project in self.spec.projects:
            record = f"project {project.number}"
            company_id = self.company_id(project.company, record)
            self.check_contact(record, project.contact, project.company)
            terms = {"name": project.name, "company": project.company,
                     "contact": project.contact}
            if (row := projects.get(project.number)) is None:
                self.session.add(Project(
                    tenant_id=tenant_id, number=project.number, name=project.name,
                    company_id=company_id, imported=terms,
                    contact_id=self.contacts[project.contact].id if project.contact else None))
                self.add(Action.CREATED, record, "project created")
                continue
            merge = self.merge(record, row)
            row.name = merge.field("name", project.name, row.name)
            self.merge_pair(merge, record, project, row)
            row.imported = terms
            self.finish(merge, "project")
        await self.session.flush()

    async def _leads(self, tenant_id: int) -> None:
        leads = {lead.number: lead for lead in await self.session.scalars(
            select(Lead).where(Lead.tenant_id == tenant_id).with_for_update()
            .options(selectinload(Lead.planned_revenues)))}
        self.left_alone["lead"] = len(set(leads) - {lead.number for lead in self.spec.leads})
        by_id = {row.id: row for row in self.statuses.values()}
        action_names = {row.id: name for name, row in self.actions.items()}
        default_status = min((s for s in self.statuses.values() if s.kind is StatusKind.OPEN),
                             key=lambda s: s.position, default=None)
        for lead in self.spec.leads:
            record = f"lead {lead.number}"
            if lead.status is not None and lead.status not in self.statuses:
                raise self.fail(record, f"status '{lead.status}' does not exist")
            if lead.sales_action is not None and lead.sales_action not in self.actions:
                raise self.fail(record, f"sales action '{lead.sales_action}' does not exist")
            company_id = self.company_id(lead.company, record)
            self.check_contact(record, lead.contact, lead.company)
            months = {_month(r.month): f"{r.amount:.2f}" for r in lead.planned_revenues}
            terms: dict[str, Any] = {
                "name": lead.name, "company": lead.company, "contact": lead.contact,
                "status": lead.status, "sales_action": lead.sales_action,
                "planned_revenues": months}
            if (row := leads.get(lead.number)) is None:
                status = self.statuses[lead.status] if lead.status else default_status
                if status is None:
                    raise self.fail(record, "no status given and the tenant has no open lead "
                                    "status")
                terms["status"] = status.name
                self.session.add(Lead(
                    tenant_id=tenant_id, number=lead.number, name=lead.name,
                    company_id=company_id, status_id=status.id, imported=terms,
                    contact_id=self.contacts[lead.contact].id if lead.contact else None,
                    sales_action_id=(self.actions[lead.sales_action].id
                                     if lead.sales_action else None),
                    planned_revenues=[PlannedRevenue(month=r.month, amount=r.amount)
                                      for r in lead.planned_revenues]))
                self.add(Action.CREATED, record, "lead created")
                continue
            merge = self.merge(record, row)
            row.name = merge.field("name", lead.name, row.name)
            self.merge_pair(merge, record, lead, row)
            status_now = by_id[row.status_id].name
            if lead.status is None:  # the file leaves the status to the CRM
                terms["status"] = (None if row.imported is None
                                   else row.imported.get("status", status_now))
            else:
                wanted = self.statuses[lead.status]
                last = merge.last("status", status_now)
                project = self.projects.get(row.project_id) if row.project_id else None
                status = merge.field(
                    "status", wanted.name, status_now, last=NEVER if last is None else last,
                    refusal=converted_lead_status(project, wanted.name, wanted.kind))
                row.status_id = self.statuses[status].id
            action = merge.field("sales_action", lead.sales_action,
                                 action_names.get(row.sales_action_id or 0))
            row.sales_action_id = self.actions[action].id if action is not None else None
            await self._revenues(merge, row, months)
            row.imported = terms
            self.finish(merge, "lead")

    async def _revenues(self, merge: RecordMerge, row: Lead, months: dict[str, str]) -> None:
        """Planned revenues month by month: a month changed in the CRM keeps its amount."""
        now = {_month(r.month): f"{r.amount:.2f}" for r in row.planned_revenues}
        last = merge.last("planned_revenues", now)
        merged = {}
        for month in sorted(set(months) | set(now)):
            amount = merge.field(f"planned_revenues {month}", months.get(month), now.get(month),
                                 last=last if last is NEVER else last.get(month))
            if amount is not None:
                merged[month] = amount
        if merged != now:
            # Delete the old months first: the unit of work would insert before deleting.
            row.planned_revenues.clear()
            await self.session.flush()
            row.planned_revenues.extend(
                PlannedRevenue(month=dt.date.fromisoformat(f"{month}-01"),
                               amount=Decimal(amount)) for month, amount in merged.items())
