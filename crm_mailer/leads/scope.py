"""Resolving a tenant's names (company keys, contact emails, status names) to its own rows."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_mailer.db.models import (
    Company,
    Contact,
    Lead,
    LeadStatus,
    Project,
    SalesAction,
    Tenant,
)
from crm_mailer.errors import InvalidRequest, NotFound
from crm_mailer.mail.addresses import normalize_address

_MONTH = re.compile(r"(\d{4})-(\d{2})")
MAX_AMOUNT = Decimal("999999999999.99")


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


def parse_month(text: str) -> dt.date:
    """`YYYY-MM` -> the first day of that month."""
    match = _MONTH.fullmatch(text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1:
        raise InvalidRequest(f"month {text!r} must be YYYY-MM")
    return dt.date(int(match.group(1)), int(match.group(2)), 1)


def parse_amount(value: str | int | Decimal) -> Decimal:
    """A net amount: a decimal with at most two places, never a float."""
    if isinstance(value, bool | float):
        raise InvalidRequest(f"amount {value!r} must be a decimal string such as '1234.50'")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidRequest(f"amount {value!r} is not a decimal number") from None
    exponent = amount.as_tuple().exponent
    if not amount.is_finite() or not isinstance(exponent, int) or exponent < -2:
        raise InvalidRequest(f"amount {value!r} must have at most two decimal places")
    if amount < 0 or amount > MAX_AMOUNT:
        raise InvalidRequest(f"amount {value!r} must be between 0 and {MAX_AMOUNT}")
    return amount.quantize(Decimal("0.01"))


class Lookup:
    """Finds the tenant's own records by the names people use; NotFound otherwise."""

    def __init__(self, session: AsyncSession, tenant: TenantScope) -> None:
        self.session, self.tenant = session, tenant

    async def company(self, key: str) -> Company:
        found = await self.session.scalar(select(Company).where(
            Company.tenant_id == self.tenant.id, Company.key == key))
        if found is None:
            raise NotFound(f"no company '{key}' in tenant '{self.tenant.slug}'")
        return found

    async def contact(self, email: str) -> Contact:
        normalized = normalize_address(email) or email.strip().lower()
        found = await self.session.scalar(select(Contact).where(
            Contact.tenant_id == self.tenant.id, Contact.email == normalized))
        if found is None:
            raise NotFound(f"no contact '{email}' in tenant '{self.tenant.slug}'")
        return found

    async def status(self, name: str) -> LeadStatus:
        found = await self.session.scalar(select(LeadStatus).where(
            LeadStatus.tenant_id == self.tenant.id, LeadStatus.name == name))
        if found is None:
            raise NotFound(f"no lead status '{name}' in tenant '{self.tenant.slug}'")
        return found

    async def sales_action(self, name: str) -> SalesAction:
        found = await self.session.scalar(select(SalesAction).where(
            SalesAction.tenant_id == self.tenant.id, SalesAction.name == name))
        if found is None:
            raise NotFound(f"no sales action '{name}' in tenant '{self.tenant.slug}'")
        return found

    async def lead(self, number: int) -> Lead:
        found = await self.session.scalar(select(Lead).where(
            Lead.tenant_id == self.tenant.id, Lead.number == number))
        if found is None:
            raise NotFound(f"no lead {number} in tenant '{self.tenant.slug}'")
        return found

    async def project(self, number: int) -> Project:
        found = await self.session.scalar(select(Project).where(
            Project.tenant_id == self.tenant.id, Project.number == number))
        if found is None:
            raise NotFound(f"no project {number} in tenant '{self.tenant.slug}'")
        return found
