"""Mail over a real SMTP connection into a real database, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer.db.repositories import tenant_by_slug
from crm_mailer.views import list_history, list_pending
from tests import factories
from tests.conftest import SmtpClient


async def history(sessions: async_sessionmaker[AsyncSession],
                  slug: str = "xyz") -> list[dict[str, Any]]:
    async with sessions() as session:
        tenant = await tenant_by_slug(session, slug)
        assert tenant is not None
        return await list_history(session, tenant.id)


async def pending(sessions: async_sessionmaker[AsyncSession],
                  slug: str = "xyz") -> list[dict[str, Any]]:
    async with sessions() as session:
        tenant = await tenant_by_slug(session, slug)
        assert tenant is not None
        return await list_pending(session, tenant.id)


async def test_bcc_outbound_mail_is_filed_on_lead_contact_and_company(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    reply = await smtp.send(factories.mail(), recipients=["bob@acme.com", "crm@xyz.hq.example"])
    assert reply.code == 250, reply
    [entry] = await history(example)
    assert (entry["lead"], entry["contact"], entry["company"]) == (11111, "bob@acme.com", "acme")
    assert entry["direction"] == "outbound"
    assert entry["participants"] == ["bob@acme.com"]
    assert entry["sent_at"] == "2026-11-20T08:30:00+00:00"
    assert await pending(example) == []
