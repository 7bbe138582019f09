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

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_mailer.db.models import (
    Base,
    LeadStatus,
    ReviewPolicy,
    SalesAction,
    SenderDomain,
    StatusKind,
    Tenant,
    TenantHost,
)
from crm_mailer.directory import rows
from crm_mailer.directory.merge import NEVER, RecordMerge, Ref, arranged, common_order
from crm_mailer.directory.report import Action, ImportReport, ReportLine, shown
from crm_mailer.directory.rows import CompanyRow, ContactRow, LeadRow, ProjectRow, month_key
from crm_mailer.directory.spec import LeadSpec, ProjectSpec, TenantSpec
from crm_mailer.errors import DirectoryImportError
from crm_mailer.leads.rules import broken_records, converted_lead_status, converted_leads_in
from crm_mailer.mail.proof import SenderPolicy

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


async def _existing(session: AsyncSession, model: type[M], tenant_id: int, key: str, *,
                    lock: bool = False) -> dict[Any, M]:
    statement: Any = select(model).where(model.tenant_id == tenant_id)  # type: ignore[attr-defined]
    # read what the CRM holds now, and keep it so until we commit; FOR NO KEY UPDATE, as
    # every lock the import takes (leads/scope.py): mail filed meanwhile is not held up
    if lock:
        statement = statement.with_for_update(key_share=True)
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


def _find_statuses(names: Sequence[str], rows: Sequence[LeadStatus]) -> dict[str, LeadStatus]:
    """The status each of the file's names refers to: the one the file gave that name last
    time (renamed in the CRM since or not), else one of that name no other name claims."""
    by_imported = {row.imported["name"]: row for row in rows
                   if row.imported and "name" in row.imported}
    found = {name: by_imported[name] for name in names if name in by_imported}
    claimed = set(found.values())
    by_name = {row.name: row for row in rows}
    for name in names:
        if name not in found and (row := by_name.get(name)) is not None \
                and row not in claimed:
            found[name] = row
            claimed.add(row)
    return found


class _TenantImport:
    """One tenant of the file, applied record kind by record kind: the tenant, statuses,
    sales actions, companies, contacts, projects, leads. The rows the CRM may change are
    locked before they are read, in the order the lead library locks them (contacts,
    statuses, projects and leads), so a change made meanwhile waits or is seen."""

    def __init__(self, session: AsyncSession, spec: TenantSpec, report: ImportReport,
                 overwrite: bool) -> None:
        self.session, self.spec, self.report, self.overwrite = session, spec, report, overwrite
        self.where = f"tenant '{spec.slug}'"
        self.unchanged: Counter[str] = Counter()
        self.left_alone: Counter[str] = Counter()
        self.statuses: dict[str, LeadStatus] = {}  # by every name a lead may give it
        self.status_rows: list[LeadStatus] = []
        self.unavailable: dict[str, str] = {}  # statuses the file names but could not create
        self.actions: dict[str, SalesAction] = {}
        self.companies: dict[str, CompanyRow] = {}
        self.company_keys: dict[int, str] = {}
        self.contacts: dict[str, ContactRow] = {}
        self.stored_contacts: rows.Stored[str, ContactRow] = rows.Stored(ContactRow, ())
        self.contact_emails: dict[int, str] = {}
        self.projects: dict[int, int] = {}  # project id -> number
        self.broken_before: dict[str, str] = {}  # records breaking a rule before the import

    def fail(self, record: str, message: str) -> DirectoryImportError:
        return DirectoryImportError(f"{self.where}, {record}: {message}")

    def add(self, action: Action, record: str = "", count: str | None = None, *,
            field: str = "", detail: str = "") -> None:
        self.report.add(ReportLine(action, self.spec.slug, record, field, detail), count)

    def merge(self, record: str, row: rows.Row) -> RecordMerge:
        return RecordMerge(self.spec.slug, record, row.imported, overwrite=self.overwrite)

    def finish(self, merge: RecordMerge, kind: str) -> None:
        if merge.report(self.report, kind):
            self.unchanged[kind] += 1

    async def run(self) -> Tenant:
        tenant, merge, terms = await self._tenant()
        self.broken_before = broken_before = await broken_records(self.session, tenant.id)
        self.stored_contacts = await rows.load(self.session, ContactRow, tenant.id, lock=True)
        self.contacts = self.stored_contacts.by_key
        await self._statuses(tenant, merge, terms)
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

    # --- the tenant, its lists and its statuses --------------------------------------------

    async def _tenant(self) -> tuple[Tenant, RecordMerge, dict[str, Any]]:
        """The tenant's own fields, decided; reported with the order of its statuses, which
        is one of them (see _statuses). Its name, hosts and sender domains are the file's
        alone (nothing in the CRM changes them); review and sender policy follow the rule."""
        spec = self.spec
        # The tenant's row locked first: the library allocates lead and project numbers under
        # this lock, so a lead it creates meanwhile never takes a number the file creates.
        tenant = (await self.session.execute(
            select(Tenant).where(Tenant.slug == spec.slug).with_for_update(key_share=True)
            .execution_options(populate_existing=True))).scalar_one_or_none()
        policies: dict[str, ReviewPolicy | SenderPolicy | None] = {
            "review": spec.review, "sender_policy": spec.sender_policy}  # None: left as is
        created = tenant is None
        if tenant is None:
            tenant = Tenant(slug=spec.slug, name=spec.name,
                            **{name: value for name, value in policies.items() if value})
            self.session.add(tenant)
            await self.session.flush()
            self.add(Action.CREATED, count="tenant created")
            merge = RecordMerge(spec.slug, "", {}, overwrite=self.overwrite)
            # What the file left out, it left at the default: the import set that too.
            terms: dict[str, Any] = {
                "review": tenant.review.value, "sender_policy": tenant.sender_policy.value,
                "lead_statuses": []}
        else:
            merge = RecordMerge(spec.slug, "", tenant.imported, overwrite=self.overwrite)
            terms = dict(tenant.imported or {})
            tenant.name = merge.follow("name", spec.name, tenant.name)
            if spec.review is not None:
                tenant.review = ReviewPolicy(merge.field("review", spec.review.value,
                                                         tenant.review.value))
                terms["review"] = spec.review.value
            if spec.sender_policy is not None:
                tenant.sender_policy = SenderPolicy(merge.field(
                    "sender_policy", spec.sender_policy.value, tenant.sender_policy.value))
                terms["sender_policy"] = spec.sender_policy.value

        taken = {host: owner for host, owner in await self.session.execute(
            select(TenantHost.host, Tenant.slug).join(Tenant)
            .where(TenantHost.host.in_(spec.hosts), TenantHost.tenant_id != tenant.id))}
        if taken:
            host, owner = next(iter(taken.items()))
            raise self.fail(f"host '{host}'", f"already registered to tenant '{owner}'")
        for model, column, values, name in (
                (TenantHost, "host", spec.hosts, "hosts"),
                (SenderDomain, "domain", spec.sender_domains, "sender_domains")):
            if await _replace_values(self.session, model, column, values,
                                     tenant_id=tenant.id) and not created:
                merge.replaced.append(name)
        return tenant, merge, terms

    async def _statuses(self, tenant: Tenant, merge: RecordMerge, terms: dict[str, Any]) -> None:
        """The statuses the file names, each found by the name the file gave it last time
        (renamed in the CRM or not), else by its name. Their names and kinds, and the
        tenant's order of them, follow the rule of merge.py; a won status that converted
        leads hold stays won. A status deleted in the CRM since the last import is not
        created again (unless --overwrite), nor one whose name a status renamed in the CRM
        holds: leads the file gives such a status keep theirs (see _leads)."""
        spec = self.spec
        rows = list(await self.session.scalars(
            select(LeadStatus).where(LeadStatus.tenant_id == tenant.id)
            .order_by(LeadStatus.position, LeadStatus.id).with_for_update(key_share=True)))
        found = _find_statuses([s.name for s in spec.lead_statuses], rows)
        known = {row: name for name, row in found.items()}  # the file's name of each row
        crm_names = {row: row.name for row in rows}  # before --overwrite renames any back
        merges = await self._status_fields(rows, found)
        last_names = (merge.imported or {}).get("lead_statuses", [])
        created, deleted, blocked = self._missing_statuses(tenant.id, rows, found, known,
                                                           last_names)
        self._status_order(merge, rows, found, known, crm_names, last_names)

        # Leads find a status by the file's name, else by the one the file gave it last
        # time, else by its name now; never by a name the file could not create.
        self.status_rows = rows + list(created.values())
        self.statuses = dict(found)
        for row in rows:
            if row.imported and "name" in row.imported:
                self.statuses.setdefault(row.imported["name"], row)
        for row in rows:
            self.statuses.setdefault(row.name, row)
        for name in blocked:
            self.statuses.pop(name, None)

        for status in spec.lead_statuses:
            if status.name in found:
                found[status.name].imported = {"name": status.name, "kind": status.kind.value}
        if spec.lead_statuses:  # a file that names none leaves the last order as it was
            terms["lead_statuses"] = [s.name for s in spec.lead_statuses
                                      if s.name not in blocked]
        tenant.imported = terms
        await self.session.flush()

        merge.report(self.report, "tenant")
        for status in spec.lead_statuses:
            record = f"lead status '{status.name}'"
            if status.name in deleted:
                self.add(Action.CONFLICT, record, "conflict", detail="deleted in the CRM since "
                         "the last import; not created again")
            elif status.name in blocked:
                self.add(Action.CONFLICT, record, "conflict", detail="not created: the CRM "
                         f"renamed lead status {shown(blocked[status.name])} to it")
            elif status.name in created:
                self.add(Action.CREATED, record, "lead status created")
                if status.name in last_names:
                    self.add(Action.OVERWRITTEN, record, "overwritten", detail="created again; "
                             "it was deleted in the CRM since the last import")
            else:
                self.finish(merges[status.name], "lead status")

    async def _status_fields(self, rows: list[LeadStatus],
                             found: dict[str, LeadStatus]) -> dict[str, RecordMerge]:
        """Name and kind of each status the file names and the CRM holds, decided."""
        merges: dict[str, RecordMerge] = {}
        held = {row.name: row for row in rows}
        for status in self.spec.lead_statuses:
            if (row := found.get(status.name)) is None:
                continue
            merge = merges[status.name] = RecordMerge(
                self.spec.slug, f"lead status '{status.name}'", row.imported,
                overwrite=self.overwrite)
            # A name changed in the CRM is kept; --overwrite renames the status back, but
            # only to a name no other status holds.
            holder = held.get(status.name)
            row.name = merge.field(
                "name", status.name, row.name,
                refusal=(f"the CRM has another lead status named {shown(status.name)}"
                         if self.overwrite and holder not in (None, row) else None))
            refusal = None
            if row.kind is StatusKind.WON and status.kind is not StatusKind.WON and (
                    converted := await converted_leads_in(self.session, row.id)):
                lead, project = converted[0]
                refusal = f"lead {lead} was {converted_lead_status(project, row.name, status.kind)}"
            row.kind = StatusKind(merge.field("kind", status.kind.value, row.kind.value,
                                              refusal=refusal))
        await self.session.flush()  # renamed back: the names are free for new statuses
        return merges

    def _missing_statuses(self, tenant_id: int, rows: list[LeadStatus],
                          found: dict[str, LeadStatus], known: dict[LeadStatus, str],
                          last_names: list[str]
                          ) -> tuple[dict[str, LeadStatus], set[str], dict[str, str]]:
        """The statuses the file names and the CRM does not hold: created (and added to
        `found`), deleted in the CRM since the last import, or blocked by a status renamed in
        the CRM to their name (name -> the file's name of that status)."""
        held = {row.name: row for row in rows}
        created: dict[str, LeadStatus] = {}
        deleted: set[str] = set()
        blocked: dict[str, str] = {}
        for status in self.spec.lead_statuses:
            if status.name in found:
                continue
            if (holder := held.get(status.name)) is not None:
                blocked[status.name] = known.get(holder, holder.name)
                self.unavailable[status.name] = (
                    f"lead status {shown(status.name)} was not created: the CRM renamed lead "
                    f"status {shown(blocked[status.name])} to it")
            elif status.name in last_names and not self.overwrite:
                deleted.add(status.name)
                self.unavailable[status.name] = (f"lead status {shown(status.name)} was "
                                                 "deleted in the CRM since the last import")
            else:
                found[status.name] = created[status.name] = LeadStatus(
                    tenant_id=tenant_id, name=status.name, kind=status.kind,
                    position=len(rows) + len(created))
                self.session.add(created[status.name])
        return created, deleted, blocked

    def _status_order(self, merge: RecordMerge, rows: list[LeadStatus],
                      found: dict[str, LeadStatus], known: dict[LeadStatus, str],
                      crm_names: dict[LeadStatus, str], last_names: list[str]) -> None:
        """The tenant's order of statuses, one field of the tenant: compared on the statuses
        the file names and the CRM holds; the others keep their places (merge.arranged)."""
        named = [found[s.name] for s in self.spec.lead_statuses if s.name in found]
        last: Any = NEVER if merge.imported is None else (
            [found[name] for name in last_names if name in found]
            if "lead_statuses" in merge.imported else rows)  # from before 0005: as it is
        file_order, now, last_order = common_order(named, rows, last)
        in_file = Ref(file_order, ", ".join(known[row] for row in file_order))
        order = merge.field("lead_statuses order", in_file,
                            Ref(now, ", ".join(crm_names[row] for row in now)),
                            last=last_order if last_order is NEVER else Ref(
                                last_order, ", ".join(known[row] for row in last_order)))
        for position, row in enumerate(arranged(rows, named, follow_file=order is in_file)):
            row.position = position

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
        stored = await rows.load(self.session, CompanyRow, tenant_id)
        companies = self.companies = stored.by_key
        self.left_alone["company"] = len(set(companies) - {c.key for c in spec.companies})
        merges: dict[str, RecordMerge] = {}
        new: list[CompanyRow] = []
        for company in spec.companies:
            record = f"company '{company.key}'"
            terms = {"name": company.name}
            if (row := companies.get(company.key)) is None:
                new.append(CompanyRow(0, company.key, company.name, terms))
                self.add(Action.CREATED, record, "company created")
                continue
            merge = merges[company.key] = self.merge(record, row)
            row.name = merge.field("name", company.name, row.name)
            row.imported = terms
        await rows.update_rows(self.session, stored.changed())
        await rows.insert_rows(self.session, tenant_id, new)
        companies.update((row.key, row) for row in new)
        self.company_keys = {row.id: key for key, row in companies.items()}

        in_file = {c.key for c in spec.companies}
        domains: dict[int, set[str]] = {}
        domain_owner: dict[str, str] = {}
        domain_rows: dict[tuple[int, str], int] = {}
        for row_id, company_id, domain in await rows.company_domains(self.session, tenant_id):
            domains.setdefault(company_id, set()).add(domain)
            domain_owner[domain] = self.company_keys[company_id]
            domain_rows[company_id, domain] = row_id
        for company in spec.companies:
            for domain in company.domains:
                owner = domain_owner.get(domain)
                if owner is not None and owner != company.key and owner not in in_file:
                    raise self.fail(f"company '{company.key}'", f"domain '{domain}' already "
                                    f"belongs to company '{owner}'")
        wanted = {companies[c.key].id: set(c.domains) for c in spec.companies}
        await rows.change_company_domains(
            self.session, tenant_id,
            removed=[row_id for (company_id, domain), row_id in domain_rows.items()
                     if company_id in wanted and domain not in wanted[company_id]],
            added=[(companies[c.key].id, domain) for c in spec.companies for domain in c.domains
                   if domain not in domains.get(companies[c.key].id, set())])
        for key, merge in merges.items():
            if domains.get(companies[key].id, set()) != wanted[companies[key].id]:
                merge.replaced.append("domains")
            self.finish(merge, "company")

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
        contacts = self.contacts  # locked in run()
        self.left_alone["contact"] = len(set(contacts) - {c.email for c in self.spec.contacts})
        new: list[ContactRow] = []
        for contact in self.spec.contacts:
            record = f"contact '{contact.email}'"
            company_id = self.company_id(contact.company, record)
            terms = {"name": contact.name, "company": contact.company}
            if (row := contacts.get(contact.email)) is None:
                new.append(ContactRow(0, contact.email, contact.name, company_id, terms))
                self.add(Action.CREATED, record, "contact created")
                continue
            merge = self.merge(record, row)
            row.name = merge.field("name", contact.name, row.name)
            company = merge.field("company", contact.company, self.company_key(row.company_id))
            row.company_id = self.company_id(company, record)
            row.imported = terms
            self.finish(merge, "contact")
        await rows.update_rows(self.session, self.stored_contacts.changed())
        await rows.insert_rows(self.session, tenant_id, new)
        contacts.update((row.email, row) for row in new)
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

    def contact_id(self, email: str | None) -> int | None:
        return self.contacts[email].id if email is not None else None

    def merge_pair(self, merge: RecordMerge, record: str, spec: LeadSpec | ProjectSpec,
                   row: LeadRow | ProjectRow) -> None:
        """Company and contact, each by the rule, and together: the contact belongs to the
        company. Where one is kept from the CRM and the other would not fit it, both stay."""
        company_now, contact_now = self.company_key(row.company_id), self.contact_email(
            row.contact_id)
        company = merge.field("company", spec.company, company_now)
        contact = merge.field("contact", spec.contact, contact_now)
        if not self.fits(contact, company):
            # A record that broke the rule before the import stays as it is: it is reported
            # at the end as the CRM's to mend, not blamed on the file.
            if not self.fits(contact_now, company_now) and record not in self.broken_before:
                raise self.fail(record, f"contact '{contact_now}', kept from the CRM, would no "
                                f"longer belong to its company '{company_now}': make the file "
                                "agree with the CRM, or import with --overwrite")
            merge.keep("company", f"the contact {shown(contact_now)}, kept from the CRM, is "
                                  f"not of company {shown(company)}")
            merge.keep("contact", f"it is not of the company {shown(company_now)}, kept from "
                                  "the CRM")
            company, contact = company_now, contact_now
        row.company_id = self.company_id(company, record)
        row.contact_id = self.contact_id(contact)

    async def _projects(self, tenant_id: int) -> None:
        stored = await rows.load(self.session, ProjectRow, tenant_id, lock=True)
        projects = stored.by_key
        self.projects = {row.id: number for number, row in projects.items()}
        self.left_alone["project"] = len(set(projects) - {p.number for p in self.spec.projects})
        new: list[ProjectRow] = []
        for project in self.spec.projects:
            record = f"project {project.number}"
            company_id = self.company_id(project.company, record)
            self.check_contact(record, project.contact, project.company)
            terms = {"name": project.name, "company": project.company,
                     "contact": project.contact}
            if (row := projects.get(project.number)) is None:
                new.append(ProjectRow(0, project.number, project.name, company_id,
                                      self.contact_id(project.contact), terms))
                self.add(Action.CREATED, record, "project created")
                continue
            merge = self.merge(record, row)
            row.name = merge.field("name", project.name, row.name)
            self.merge_pair(merge, record, project, row)
            row.imported = terms
            self.finish(merge, "project")
        await rows.update_rows(self.session, stored.changed())
        await rows.insert_rows(self.session, tenant_id, new)

    async def _leads(self, tenant_id: int) -> None:
        stored = await rows.load(self.session, LeadRow, tenant_id, lock=True)
        leads = stored.by_key
        self.left_alone["lead"] = len(set(leads) - {lead.number for lead in self.spec.leads})
        by_id = {row.id: row for row in self.status_rows}
        action_names = {row.id: name for name, row in self.actions.items()}
        default_status = min((s for s in self.status_rows if s.kind is StatusKind.OPEN),
                             key=lambda s: s.position, default=None)
        new: list[LeadRow] = []
        revenues: dict[int, dict[str, str]] = {}  # of stored leads, where they change
        for lead in self.spec.leads:
            record = f"lead {lead.number}"
            if lead.status is not None and lead.status not in self.statuses \
                    and lead.status not in self.unavailable:
                raise self.fail(record, f"status '{lead.status}' does not exist")
            if lead.sales_action is not None and lead.sales_action not in self.actions:
                raise self.fail(record, f"sales action '{lead.sales_action}' does not exist")
            company_id = self.company_id(lead.company, record)
            self.check_contact(record, lead.contact, lead.company)
            months = {month_key(r.month): f"{r.amount:.2f}" for r in lead.planned_revenues}
            terms: dict[str, Any] = {
                "name": lead.name, "company": lead.company, "contact": lead.contact,
                "status": lead.status, "sales_action": lead.sales_action,
                "planned_revenues": months}
            if (row := leads.get(lead.number)) is None:
                status = self.statuses.get(lead.status) if lead.status else default_status
                unavailable = self.unavailable.get(lead.status or "")
                if unavailable:  # a new lead gets what it would without a status
                    status = default_status
                if status is None:
                    raise self.fail(record, f"{unavailable or 'no status given'} and the tenant "
                                    "has no open lead status")
                terms["status"] = status.name
                new.append(LeadRow(
                    0, lead.number, lead.name, company_id, self.contact_id(lead.contact),
                    status.id, self.actions[lead.sales_action].id if lead.sales_action else None,
                    None, terms, months))
                self.add(Action.CREATED, record, "lead created")
                if unavailable:
                    given = RecordMerge(self.spec.slug, record, None, overwrite=self.overwrite)
                    given.field("status", lead.status, status.name,
                                refusal=f"{unavailable}; it got the first open status")
                    given.report(self.report, "lead")
                continue
            merge = self.merge(record, row)
            row.name = merge.field("name", lead.name, row.name)
            self.merge_pair(merge, record, lead, row)
            status_now = by_id[row.status_id]
            if lead.status is None:  # the file leaves the status to the CRM
                terms["status"] = (None if row.imported is None
                                   else row.imported.get("status", status_now.name))
            else:
                # Statuses compared as rows: the file may know one by the name it gave it,
                # the CRM by the one it renamed it to; the report shows the CRM's.
                wanted = self.statuses.get(lead.status)
                current = Ref(status_now.id, status_now.name)
                last = merge.last("status", current)
                if isinstance(last, str):
                    last = Ref(self.statuses[last].id if last in self.statuses else None, last)
                project = self.projects.get(row.project_id) if row.project_id else None
                status = merge.field(
                    "status", Ref(wanted.id if wanted else None, lead.status), current,
                    last=NEVER if last is None else last,
                    refusal=(self.unavailable[lead.status] if wanted is None
                             else converted_lead_status(project, lead.status, wanted.kind)))
                row.status_id = status.key
            action = merge.field("sales_action", lead.sales_action,
                                 action_names.get(row.sales_action_id or 0))
            row.sales_action_id = self.actions[action].id if action is not None else None
            if (merged := self._revenues(merge, row, months)) != row.revenues:
                row.revenues = revenues[row.id] = merged
            row.imported = terms
            self.finish(merge, "lead")
        await rows.update_rows(self.session, stored.changed())
        await rows.insert_rows(self.session, tenant_id, new)
        await rows.replace_revenues(self.session, revenues)
        await rows.add_revenues(self.session, {row.id: row.revenues for row in new})

    @staticmethod
    def _revenues(merge: RecordMerge, row: LeadRow, months: dict[str, str]) -> dict[str, str]:
        """Planned revenues month by month: a month changed in the CRM keeps its amount."""
        now = row.revenues
        last = merge.last("planned_revenues", now)
        merged = {}
        for month in sorted(set(months) | set(now)):
            amount = merge.field(f"planned_revenues {month}", months.get(month), now.get(month),
                                 last=last if last is NEVER else last.get(month))
            if amount is not None:
                merged[month] = amount
        return merged
