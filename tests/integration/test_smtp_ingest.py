"""Mail over a real SMTP connection into a real database, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import smtplib
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from crm_mailer.db.repositories import tenant_by_slug
from crm_mailer.settings import Settings
from crm_mailer.smtp.server import SmtpServer
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


async def test_one_structured_log_event_per_message_and_tenant(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    with capture_logs() as logs:
        assert (await smtp.send(factories.mail(message_id="<log@xyz.de>",
                                               subject="ohne Nummer"))).code == 250
    [event] = [e for e in logs if e["event"] == "message"]
    assert event["tenant"] == "xyz" and event["message_id"] == "log@xyz.de"
    assert event["outcome"] == "queued" and event["reasons"] == ["no_number"]
    assert event["duration_ms"] > 0
    assert "body" not in event and "Hallo" not in str(event)  # never log message bodies


async def test_shutdown_tells_idle_sessions_421_and_refuses_new_mail(
        example: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    server = SmtpServer(settings, example)
    host, port = await server.start()
    idle = await asyncio.to_thread(smtplib.SMTP, host, port)
    await asyncio.to_thread(idle.ehlo)
    await server.stop(grace=2)
    code, _ = await asyncio.to_thread(idle.getreply)
    assert code == 421
    with pytest.raises(OSError):
        await asyncio.to_thread(smtplib.SMTP, host, port, timeout=2)
