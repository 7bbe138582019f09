"""Mail over a real SMTP connection into a real database, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import smtplib
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from crm_mailer.db.engine import _SQLITE_WRITE_LOCKS, _bind
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


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_shutdown_lets_a_message_in_flight_finish_with_250(
        example: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    server = SmtpServer(settings, example)
    host, port = await server.start()

    def deliver() -> int:
        client = smtplib.SMTP(host, port, timeout=30)
        client.ehlo()
        client.mail("alice@xyz.de")
        client.rcpt("crm@xyz.hq.example")
        code, _ = client.data(factories.mail(message_id="<drain@xyz.de>"))
        client.close()  # the drain tells the now idle session 421 and closes it
        return code

    # Hold the database's write lock so the delivery is caught in the middle of DATA.
    lock = writing_lock(example)
    await lock.acquire()
    delivery = asyncio.create_task(asyncio.to_thread(deliver))
    for _ in range(1000):  # until the delivery is inside DATA (at most 10 s)
        if server.handler.in_flight:
            break
        await asyncio.sleep(0.01)
    stopping = asyncio.create_task(server.stop(grace=10))
    await asyncio.sleep(0.2)
    assert not stopping.done()  # it waits for the message in flight
    lock.release()
    code = await delivery
    await stopping
    assert code == 250
    assert [e["message_id"] for e in await history(example)] == ["drain@xyz.de"]


def writing_lock(sessions: async_sessionmaker[AsyncSession]) -> asyncio.Lock:
    """The in-process SQLite write lock that `writing()` takes."""
    engine = _bind(sessions)
    assert engine is not None
    return _SQLITE_WRITE_LOCKS.setdefault(engine, asyncio.Lock())


async def test_a_contact_past_the_first_chunk_of_recipients_is_found(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    """The facts are read in chunks of addresses and domains (repositories._CHUNK): a
    contact in the second chunk, with its company's domain, counts as one in the first."""
    # Sorted before bob@acme.com and acme.com, as the lookups sort them.
    guests = [f"a-guest{i}@a-guests{i}.example" for i in range(549)]
    to = ", ".join([*guests, "bob@acme.com", *guests[:50]])
    reply = await smtp.send(factories.mail(to=to), recipients=["crm@xyz.hq.example"])
    assert reply.code == 250, reply
    [entry] = await history(example)
    assert (entry["lead"], entry["contact"], entry["company"]) == (11111, "bob@acme.com", "acme")
