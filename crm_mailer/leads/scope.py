"""Resolving a tenant's names (company keys, contact emails, status names) to its own rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_mailer.db.models import (
    Base,
    Company,
    Contact,
    Lead,
    LeadStatus,
    Project,
    SalesAction,
    Tenant,
    fits,
)
from crm_mailer.errors import NotFound
from crm_mailer.leads.values import MAX_AMOUNT, parse_amount, parse_month
from crm_mailer.mail.addresses import normalize_address

__all__ = [
    "MAX_AMOUNT", "Lookup", "RowLock", "TenantScope", "parse_amount", "parse_month",
    "tenant_scope",
]

M = TypeVar("M", bound=Base)

# A row to change is locked for update (FOR NO KEY UPDATE: keys never change, so mail being
# filed on it meanwhile is not held up); a row a change relies on (the contact whose company
# is checked, the lead a mail is filed on) for share, so no one changes it until we commit.
# Every writer locks in one order, so two never deadlock: the tenant (numbering, status
# list), contacts, statuses, projects, leads, then queue items and history entries. The
# import (directory/importer.py) takes them in the same order, and of the same strength: the
# tenant's row and every row it changes FOR NO KEY UPDATE. A row to delete is locked
# FOR UPDATE ("delete"): unlike the other two, it waits for mail being filed on the row
# (whose foreign key holds it FOR KEY SHARE), so that what rests on the row is counted
# after that mail committed, not detached unseen by ON DELETE SET NULL.
# SQLite serializes writers and renders none of them.
RowLock = Literal["update", "share", "delete"] | None


@dataclass(frozen=True, slots=True)
class TenantScope:
    """One tenant, as every lookup of the library sees it."""

    id: int
    slug: str


async def tenant_scope(session: AsyncSession, slug: str) -> TenantScope:
    """The tenant with this slug, or NotFound."""
    tenant = (await session.execute(select(Tenant.id, Tenant.slug)
                                    .where(Tenant.slug == slug))).one_or_none()
    if tenant is None:
        raise NotFound(f"no tenant '{slug}'")
    return TenantScope(tenant.id, tenant.slug)


class Lookup:
    """Finds the tenant's own records by the names people use; NotFound otherwise."""

    def __init__(self, session: AsyncSession, tenant: TenantScope) -> None:
        self.session, self.tenant = session, tenant

    async def _one(self, model: type[M], column: Any, value: object, what: str,
                   lock: RowLock = None) -> M:
        if isinstance(value, int) and not fits(column, value):
            raise NotFound(f"no {what} in tenant '{self.tenant.slug}'")
        tenant_column: Any = model.tenant_id  # type: ignore[attr-defined]
        statement: Any = select(model).where(tenant_column == self.tenant.id, column == value)
        if lock is not None:  # and read what the lock holder committed, not a stale copy
            statement = statement.with_for_update(read=lock == "share",
                                                  key_share=lock == "update") \
                .execution_options(populate_existing=True)
        found: M | None = await self.session.scalar(statement)
        if found is None:
            raise NotFound(f"no {what} in tenant '{self.tenant.slug}'")
        return found

    async def lock_tenant(self) -> None:
        """Serialize changes to the tenant's numbering and status list (a row lock on
        PostgreSQL, also taken by the import; SQLite's write transactions are serial).
        FOR NO KEY UPDATE: mail for the tenant, whose foreign keys hold the row FOR KEY
        SHARE, is stored meanwhile."""
        await self.session.execute(select(Tenant.id).where(Tenant.id == self.tenant.id)
                                   .with_for_update(key_share=True))

    async def company(self, key: str) -> Company:
        return await self._one(Company, Company.key, key, f"company '{key}'")

    async def contact(self, email: str, lock: RowLock = None) -> Contact:
        normalized = normalize_address(email) or email.strip().lower()
        return await self._one(Contact, Contact.email, normalized, f"contact '{email}'", lock)

    async def status(self, name: str, lock: RowLock = None) -> LeadStatus:
        return await self._one(LeadStatus, LeadStatus.name, name, f"lead status '{name}'",
                               lock)

    async def sales_action(self, name: str) -> SalesAction:
        return await self._one(SalesAction, SalesAction.name, name, f"sales action '{name}'")

    async def lead(self, number: int, lock: RowLock = None) -> Lead:
        return await self._one(Lead, Lead.number, number, f"lead {number}", lock)

    async def project(self, number: int, lock: RowLock = None) -> Project:
        return await self._one(Project, Project.number, number, f"project {number}", lock)
