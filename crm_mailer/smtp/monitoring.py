"""What the metrics endpoint reports about the database: the queue depth per tenant, and
whether the database answers (for /readyz), checked every few seconds by `serve`."""

from __future__ import annotations

import asyncio

import structlog
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer import metrics
from crm_mailer.db.engine import reading
from crm_mailer.db.failures import DATABASE_ERRORS
from crm_mailer.db.models import PendingMatch, PendingState, Tenant
from crm_mailer.smtp.readiness import SchemaWatch

log = structlog.get_logger("crm_mailer.metrics")

EVERY = 15.0  # seconds between checks
_FAILURES: tuple[type[BaseException], ...] = (TimeoutError, *DATABASE_ERRORS)


async def waiting_by_tenant(session: AsyncSession) -> dict[str, int]:
    """Each tenant's number of waiting queue items (0 for none)."""
    rows = await session.execute(
        select(Tenant.slug, func.count(PendingMatch.id))
        .outerjoin(PendingMatch, and_(PendingMatch.tenant_id == Tenant.id,
                                      PendingMatch.state == PendingState.WAITING))
        .group_by(Tenant.slug))
    return {slug: count for slug, count in rows}


class Monitor:
    """Ready when the schema is current and the last check reached the database."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], watch: SchemaWatch,
                 every: float = EVERY) -> None:
        self.sessions, self.watch, self.every = sessions, watch, every
        self.database_ok = False
        self._tenants: set[str] = set()  # the tenants the gauge has a value for

    def ready(self) -> bool:
        return self.watch.ready and self.database_ok

    async def check(self) -> None:
        try:
            async with reading(self.sessions) as session:
                counts = await asyncio.wait_for(waiting_by_tenant(session), self.every)
        except _FAILURES as exc:
            if self.database_ok:
                log.warning("metrics.database_unavailable", error=type(exc).__name__)
            self.database_ok = False
            return
        self.database_ok = True
        for slug, count in counts.items():
            metrics.PENDING.labels(slug).set(count)
        for gone in self._tenants - counts.keys():  # a removed tenant has no queue
            metrics.PENDING.remove(gone)
        self._tenants = set(counts)

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.every)
