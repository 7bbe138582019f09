"""Leads: create, read, list, update (one or many at once), change company, planned
revenues, delete, convert to a project, and the sales project's task per customer."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crm_mailer.db.models import (
    Company,
    Contact,
    HistoryEntry,
    Lead,
    LeadStatus,
    PlannedRevenue,
    Project,
    ProjectTask,
    SalesAction,
    StatusKind,
    fits,
)
from crm_mailer.errors import Conflict, InvalidRequest, NotFound
from crm_mailer.leads.rules import converted_lead_status
from crm_mailer.leads.scope import Lookup, TenantScope, parse_amount, parse_month
from crm_mailer.wording import counted

SALES_PROJECT_NAME = "Vertrieb"
LeadQuery = Select[Lead, str, str, str, StatusKind, str, int]


class Unset(enum.Enum):
    """Marks an argument that was not given (None means: clear the value)."""

    UNSET = "unset"


UNSET = Unset.UNSET


@dataclass(frozen=True, slots=True)
class LeadView:
    """A lead as the main app and the CLI show it."""

    number: int
    name: str
    company: str | None
    contact: str | None
    status: str
    status_kind: StatusKind
    sales_action: str | None
    planned_revenues: tuple[tuple[dt.date, Decimal], ...]
    project: int | None

    @property
    def expected_volume(self) -> Decimal:
        """The sum of the planned revenues, net (the FAQ's "erwartetes Volumen")."""
        return sum((amount for _, amount in self.planned_revenues), Decimal("0.00"))

    def as_json(self) -> dict[str, Any]:
        return {
            "number": self.number, "name": self.name, "company": self.company,
            "contact": self.contact, "status": self.status,
            "status_kind": self.status_kind.value, "sales_action": self.sales_action,
            "planned_revenues": [{"month": month.strftime("%Y-%m"), "amount": f"{amount:.2f}"}
                                 for month, amount in self.planned_revenues],
            "expected_volume": f"{self.expected_volume:.2f}",
            "project": self.project,
        }


@dataclass(frozen=True, slots=True)
class ProjectView:
    number: int
    name: str
    company: str | None
    contact: str | None
    lead: int | None

    def as_json(self) -> dict[str, Any]:
        return {"number": self.number, "name": self.name, "company": self.company,
                "contact": self.contact, "lead": self.lead}


@dataclass(frozen=True, slots=True)
class SalesTask:
    """Where to book sales time for one customer: the sales project and its task."""

    project: int
    task_id: int
    task: str
    company: str

    def as_json(self) -> dict[str, Any]:
        return {"project": self.project, "task_id": self.task_id, "task": self.task,
                "company": self.company}


class LeadLibrary:
    """The lead operations of one tenant, on the caller's session and transaction."""

    def __init__(self, session: AsyncSession, tenant: TenantScope) -> None:
        self.session = session
        self.tenant = tenant
        self.lookup = Lookup(session, tenant)

    # --- reading -------------------------------------------------------------------------

    def _view_query(self) -> LeadQuery:
        return (
            select(Lead, Company.key, Contact.email, LeadStatus.name, LeadStatus.kind,
                   SalesAction.name, Project.number)
            .join(LeadStatus, LeadStatus.id == Lead.status_id)
            .outerjoin(Company, Company.id == Lead.company_id)
            .outerjoin(Contact, Contact.id == Lead.contact_id)
            .outerjoin(SalesAction, SalesAction.id == Lead.sales_action_id)
            .outerjoin(Project, Project.id == Lead.project_id)
            .where(Lead.tenant_id == self.tenant.id)
            .options(selectinload(Lead.planned_revenues))
            .order_by(Lead.number)
        )

    async def _views(self, query: LeadQuery) -> list[LeadView]:
        rows = (await self.session.execute(query.execution_options(populate_existing=True))).all()
        return [
            LeadView(lead.number, lead.name, company, contact, status, StatusKind(kind), action,
                     tuple((r.month, r.amount) for r in lead.planned_revenues), project)
            for lead, company, contact, status, kind, action, project in rows
        ]

    async def get(self, number: int) -> LeadView:
        """One lead by number."""
        views = await self._views(self._view_query().where(Lead.number == number)) \
            if fits(Lead.number, number) else []
        if not views:
            raise NotFound(f"no lead {number} in tenant '{self.tenant.slug}'")
        return views[0]

    async def list_leads(self, *, status: str | None = None, company: str | None = None,
                   sales_action: str | None = None,
                   kinds: Sequence[StatusKind] | None = None) -> list[LeadView]:
        """Leads by number, filtered by status name, company key, sales action or kind."""
        query = self._view_query()
        if status is not None:
            query = query.where(Lead.status_id == (await self.lookup.status(status)).id)
        if company is not None:
            query = query.where(Lead.company_id == (await self.lookup.company(company)).id)
        if sales_action is not None:
            action = await self.lookup.sales_action(sales_action)
            query = query.where(Lead.sales_action_id == action.id)
        if kinds is not None:
            query = query.where(LeadStatus.kind.in_(list(kinds)))
        return await self._views(query)

    # --- creating ------------------------------------------------------------------------

    async def _next_number(self, model: type[Lead] | type[Project]) -> int:
        await self.lookup.lock_tenant()
        highest = await self.session.scalar(select(func.max(model.number))
                                            .where(model.tenant_id == self.tenant.id))
        return int(highest or 0) + 1

    async def _default_status(self) -> LeadStatus:
        status = await self.session.scalar(
            select(LeadStatus).where(LeadStatus.tenant_id == self.tenant.id,
                                     LeadStatus.kind == StatusKind.OPEN)
            .order_by(LeadStatus.position).limit(1).with_for_update(read=True))
        if status is None:
            raise InvalidRequest(f"tenant '{self.tenant.slug}' has no open lead status")
        return status

    def _check_contact(self, contact: Contact, company_id: int | None, company_key: str | None,
                       what: str) -> None:
        if contact.company_id != company_id:
            # a lead whose company was deleted has none: no contact fits it
            owner = f"company '{company_key}'" if company_key else "its company (it has none)"
            raise InvalidRequest(f"{what}: contact '{contact.email}' does not belong to {owner}")

    async def create(self, *, name: str, company: str, contact: str | None = None,
                     status: str | None = None, sales_action: str | None = None) -> LeadView:
        """A new lead with the tenant's next lead number."""
        if not name.strip():
            raise InvalidRequest("a lead needs a name")
        async with self.session.begin_nested():
            await self.lookup.lock_tenant()  # the number; and first, in the one lock order
            company_row = await self.lookup.company(company)
            contact_row = await self.lookup.contact(contact, "share") if contact else None
            if contact_row is not None:
                self._check_contact(contact_row, company_row.id, company, "new lead")
            status_row = await (self.lookup.status(status, "share") if status
                                else self._default_status())
            action = await self.lookup.sales_action(sales_action) if sales_action else None
            lead = Lead(tenant_id=self.tenant.id, number=await self._next_number(Lead),
                        name=name.strip(), company_id=company_row.id,
                        contact_id=contact_row.id if contact_row else None,
                        status_id=status_row.id, sales_action_id=action.id if action else None)
            self.session.add(lead)
        return await self.get(lead.number)

    # --- changing ------------------------------------------------------------------------

    async def update(self, number: int, *, name: str | Unset = UNSET,
                     contact: str | Unset | None = UNSET, status: str | Unset = UNSET,
                     sales_action: str | Unset | None = UNSET) -> LeadView:
        """Change one lead; arguments not given stay as they are, None clears."""
        if not isinstance(name, Unset) and not name.strip():
            raise InvalidRequest(f"lead {number}: the name must not be empty")
        async with self.session.begin_nested():
            await self._update_leads([number], name=name, contact=contact, status=status,
                                     sales_action=sales_action)
        return await self.get(number)

    async def update_many(self, numbers: Sequence[int], *, contact: str | Unset | None = UNSET,
                          status: str | Unset = UNSET,
                          sales_action: str | Unset | None = UNSET) -> list[LeadView]:
        """The FAQ's multi-select: set contact, sales action and/or status on many leads at
        once. All change, or - on the first bad lead, named in the error - none."""
        if not numbers:
            raise InvalidRequest("name at least one lead")
        async with self.session.begin_nested():
            await self._update_leads(numbers, contact=contact, status=status,
                                     sales_action=sales_action)
        return [await self.get(number) for number in dict.fromkeys(numbers)]

    async def _update_leads(self, numbers: Sequence[int], *, contact: str | Unset | None,
                            status: str | Unset, sales_action: str | Unset | None,
                            name: str | Unset = UNSET) -> None:
        # Locked before they are read (contact, status, leads: the one lock order): a
        # company change committed meanwhile is seen here (the contact check below uses
        # it), or waits until we are done.
        contact_row = (await self.lookup.contact(contact, "share")
                       if isinstance(contact, str) else None)
        status_row = (await self.lookup.status(status, "share")
                      if isinstance(status, str) else None)
        action_row = (await self.lookup.sales_action(sales_action)
                      if isinstance(sales_action, str) else None)
        locked = {number: await self.lookup.lead(number, "update")
                  for number in sorted(set(numbers))}  # in one order: two bulk updates
        leads = [locked[number] for number in dict.fromkeys(numbers)]  # never deadlock
        companies = {c.id: c.key for c in await self.session.scalars(
            select(Company).where(Company.id.in_({lead.company_id for lead in leads
                                                  if lead.company_id})))}
        projects = {project_id: number for project_id, number in await self.session.execute(
            select(Project.id, Project.number).where(Project.id.in_(
                {lead.project_id for lead in leads if lead.project_id})))
        } if status_row is not None else {}  # a converted lead keeps a won status
        for lead in leads:  # validate every lead before changing any
            if contact_row is not None:
                self._check_contact(contact_row, lead.company_id,
                                    companies.get(lead.company_id or 0), f"lead {lead.number}")
            if status_row is not None and (refusal := converted_lead_status(
                    projects.get(lead.project_id or 0), status_row.name, status_row.kind)):
                raise InvalidRequest(f"lead {lead.number}: {refusal}")
        for lead in leads:
            if not isinstance(name, Unset):
                lead.name = name.strip()
            if not isinstance(contact, Unset):
                lead.contact_id = contact_row.id if contact_row else None
            if status_row is not None:
                lead.status_id = status_row.id
            if not isinstance(sales_action, Unset):
                lead.sales_action_id = action_row.id if action_row else None
        await self.session.flush()

    async def set_company(self, number: int, company: str,
                          contact: str | None = None) -> LeadView:
        """Move the lead to another company. Its contact is cleared (the FAQ's warning),
        unless a contact of the new company is given in the same call. The lead's own
        company again is no change: its contact stays (or is replaced, if one is given)."""
        async with self.session.begin_nested():
            contact_row = await self.lookup.contact(contact, "share") if contact else None
            lead = await self.lookup.lead(number, "update")
            company_row = await self.lookup.company(company)
            if contact_row is not None:
                self._check_contact(contact_row, company_row.id, company, f"lead {number}")
            if contact_row is not None or lead.company_id != company_row.id:
                lead.contact_id = contact_row.id if contact_row else None
            lead.company_id = company_row.id
            await self.session.flush()
        return await self.get(number)

    async def set_revenue(self, number: int, month: str,
                          amount: str | int | Decimal) -> LeadView:
        """Set the planned net revenue of one month; an amount of 0 removes the month."""
        first_day, value = parse_month(month), parse_amount(amount)
        async with self.session.begin_nested():
            lead = await self.lookup.lead(number, "update")
            existing = await self.session.scalar(select(PlannedRevenue).where(
                PlannedRevenue.lead_id == lead.id, PlannedRevenue.month == first_day))
            if value == 0:
                if existing is not None:
                    await self.session.delete(existing)
            elif existing is not None:
                existing.amount = value
            else:
                self.session.add(PlannedRevenue(lead_id=lead.id, month=first_day, amount=value))
            await self.session.flush()
        return await self.get(number)

    async def delete(self, number: int, *, detach_history: bool = False) -> None:
        """Delete a lead. Mail filed on it is not dropped silently: refused unless
        `detach_history`, which keeps those entries in the company's history."""
        async with self.session.begin_nested():
            lead = await self.lookup.lead(number, "delete")  # waits for mail being filed on it
            filed = await self.session.scalar(select(func.count()).select_from(HistoryEntry)
                                              .where(HistoryEntry.lead_id == lead.id))
            if filed and not detach_history:
                raise Conflict(f"lead {number} has {counted(filed, 'contact-history entry')}: "
                               "detach them (they stay with the company) or keep the lead")
            await self.session.delete(lead)  # its entries' foreign key: ON DELETE SET NULL
            await self.session.flush()

    # --- projects ------------------------------------------------------------------------

    async def convert_to_project(self, number: int) -> ProjectView:
        """Create a project from the lead: name, company and contact taken over, the lead
        linked to it and set to the tenant's first won status."""
        async with self.session.begin_nested():
            # The lead row locked before it is read: a second convert waits here, then
            # sees the project the first one made (without the lock both made one). The
            # tenant first: the project's number is allocated under its lock.
            await self.lookup.lock_tenant()
            lead = await self.lookup.lead(number, "update")
            if lead.project_id is not None:
                existing = await self.session.get_one(Project, lead.project_id)
                raise Conflict(f"lead {number} was already converted to project "
                               f"{existing.number}")
            status = await self.session.get_one(LeadStatus, lead.status_id)
            if status.kind is StatusKind.LOST:
                raise InvalidRequest(f"lead {number} is lost ('{status.name}'): a lost lead "
                                     "does not become a project")
            won = await self.session.scalar(
                select(LeadStatus).where(LeadStatus.tenant_id == self.tenant.id,
                                         LeadStatus.kind == StatusKind.WON)
                .order_by(LeadStatus.position).limit(1).with_for_update(read=True))
            if won is None:
                raise InvalidRequest(f"tenant '{self.tenant.slug}' has no won lead status")
            project = Project(tenant_id=self.tenant.id, number=await self._next_number(Project),
                              name=lead.name, company_id=lead.company_id,
                              contact_id=lead.contact_id)
            self.session.add(project)
            await self.session.flush()
            lead.project_id = project.id
            lead.status_id = won.id
            await self.session.flush()
        view = await self.get(number)
        return ProjectView(project.number, project.name, view.company, view.contact, number)

    async def sales_task(self, company: str) -> SalesTask:
        """The tenant's sales project and its task for `company`, created on first use.
        There is no time on leads (FAQ): people book sales time on this task."""
        company_row = await self.lookup.company(company)
        for _ in range(3):  # a concurrent first use may win the race; then we read its rows
            try:
                async with self.session.begin_nested():
                    project = await self._sales_project()
                    task = await self.session.scalar(select(ProjectTask).where(
                        ProjectTask.project_id == project.id,
                        ProjectTask.company_id == company_row.id))
                    if task is None:
                        task = ProjectTask(tenant_id=self.tenant.id, project_id=project.id,
                                           company_id=company_row.id, name=company_row.name)
                        self.session.add(task)
                        await self.session.flush()
                return SalesTask(project.number, task.id, task.name, company_row.key)
            except IntegrityError:
                continue
        raise Conflict(f"could not create the sales task for company '{company}': try again")

    async def _sales_project(self) -> Project:
        project = await self.session.scalar(select(Project).where(
            Project.tenant_id == self.tenant.id, Project.is_sales_project.is_(True)))
        if project is None:
            project = Project(tenant_id=self.tenant.id, number=await self._next_number(Project),
                              name=SALES_PROJECT_NAME, is_sales_project=True)
            self.session.add(project)
            await self.session.flush()
        return project
