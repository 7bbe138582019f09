"""Resolving a tenant's names (company keys, contact emails, status names) to its own rows."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

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
)
from crm_mailer.errors import InvalidRequest, NotFound
from crm_mailer.mail.addresses import normalize_address

M = TypeVar("M", bound=Base)
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

    async def _one(self, model: type[M], column: Any, value: object, what: str) -> M:
        tenant_column: Any = model.tenant_id  # type: ignore[attr-defined]
        statement: Any = select(model).where(tenant_column == self.tenant.id, column == value)
        found: M | None = await self.session.scalar(statement)
        if found is None:
            raise NotFound(f"no {what} in tenant '{self.tenant.slug}'")
        return found

    async def company(self, key: str) -> Company:
        return await self._one(Company, Company.key, key, f"company '{key}'")

    async def contact(self, email: str) -> Contact:
        normalized = normalize_address(email) or email.strip().lower()
        return await self._one(Contact, Contact.email, normalized, f"contact '{email}'")

    async def status(self, name: str) -> LeadStatus:
        return await self._one(LeadStatus, LeadStatus.name, name, f"lead status '{name}'")

    async def sales_action(self, name: str) -> SalesAction:
        return await self._one(SalesAction, SalesAction.name, name, f"sales action '{name}'")

    async def lead(self, number: int) -> Lead:
        return await self._one(Lead, Lead.number, number, f"lead {number}")

    async def project(self, number: int) -> Project:
        return await self._one(Project, Project.number, number, f"project {number}")
