"""The library API for the original of stored mail: tenant isolation, and the honest answer
when attachments cannot be read back as they were listed."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer import originals
from crm_mailer.db.models import InboundMessage
from crm_mailer.db.repositories import tenant_by_slug
from crm_mailer.errors import NotFound
from tests import factories
from tests.acceptance.test_originals_cli import PDF, with_attachments
from tests.conftest import SmtpClient, load_directory
from tests.integration.test_smtp_ingest import history


async def test_another_tenants_mail_is_not_found(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    await load_directory(example, {"tenants": [factories.directory()["tenants"][0],
                                               factories.second_tenant()]})
    assert (await smtp.send(with_attachments("XYZ Lead 11111"),
                            recipients=["crm@xyz.hq.example"])).code == 250
    [entry] = await history(example)
    async with example() as session:
        own = await tenant_by_slug(session, "xyz")
        other = await tenant_by_slug(session, "other")
        assert own is not None and other is not None
        files = await originals.attachments_of(session, own.id, "history entry", entry["id"])
        assert files[0].content == PDF
        assert (await originals.raw_of_entry(session, own.id, entry["id"])).startswith(b"From")
        with pytest.raises(NotFound, match=f"no history entry {entry['id']}"):
            await originals.raw_of_entry(session, other.id, entry["id"])
        with pytest.raises(NotFound, match=f"no history entry {entry['id']}"):
            await originals.attachments_of(session, other.id, "history entry", entry["id"])


async def test_attachments_that_do_not_read_back_as_listed_are_not_guessed(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    assert (await smtp.send(with_attachments("XYZ Lead 11111"),
                            recipients=["crm@xyz.hq.example"])).code == 250
    [entry] = await history(example)
    async with example() as session, session.begin():
        await session.execute(update(InboundMessage).values(
            attachments=[{"filename": "other.pdf", "content_type": "application/pdf",
                          "size": 1}]))
    async with example() as session:
        own = await tenant_by_slug(session, "xyz")
        assert own is not None
        with pytest.raises(NotFound, match="cannot be read back as they were listed"):
            await originals.attachments_of(session, own.id, "history entry", entry["id"])
