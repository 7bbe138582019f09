"""The queue-depth gauge /metrics shows: one value per tenant, none for a tenant gone."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm_mailer import metrics
from crm_mailer.db.engine import writing
from crm_mailer.db.models import Tenant
from crm_mailer.smtp.monitoring import Monitor
from crm_mailer.smtp.readiness import SchemaWatch
from tests import factories
from tests.conftest import SmtpClient


def waiting(slug: str) -> float | None:
    return metrics.QUEUE_REGISTRY.get_sample_value("crm_mailer_pending_waiting",
                                                   {"tenant": slug})


async def test_the_gauge_follows_the_queue_and_forgets_a_removed_tenant(
        example: async_sessionmaker[AsyncSession], engine: AsyncEngine,
        smtp: SmtpClient) -> None:
    watch = SchemaWatch(engine)
    watch.ready = True
    monitor = Monitor(example, watch)
    await monitor.check()
    assert monitor.ready() and waiting("xyz") == 0
    assert (await smtp.send(factories.mail(subject="ohne Nummer"))).code == 250
    await monitor.check()
    assert waiting("xyz") == 1
    async with writing(example) as session:
        await session.execute(delete(Tenant).where(Tenant.slug == "xyz"))
    await monitor.check()
    assert waiting("xyz") is None
