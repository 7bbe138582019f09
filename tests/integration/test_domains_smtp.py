"""Issue 9, rules 5 and 6 over SMTP, on SQLite and PostgreSQL: a host under a company's
domain is that company's, look-alikes are not, and free-mail domains identify no company."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer.db.repositories import tenant_by_slug
from crm_mailer.errors import DirectoryImportError
from tests import factories
from tests.conftest import SmtpClient, load_directory
from tests.integration.test_smtp_ingest import history, pending


async def test_a_customer_writing_from_a_subdomain_is_accepted_for_its_company(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    sender = "max@vertrieb.acme.com"
    reply = await smtp.send(factories.mail(sender=sender, to="alice@xyz.de",
                                           subject="AW: XYZ Lead 11111"), sender=sender)
    assert reply.code == 250, reply
    [item] = await pending(example)  # the company is certain, the contact is not known
    assert item["reasons"] == ["no_contact"]
    assert item["candidates"]["companies"] == ["acme"]
    assert item["candidates"]["leads"] == [11111]


@pytest.mark.parametrize("sender", ["max@notacme.com", "max@acme.com.evil.example"])
async def test_a_look_alike_of_a_company_domain_is_refused(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient, sender: str) -> None:
    reply = await smtp.send(factories.mail(sender=sender, to="alice@xyz.de"), sender=sender)
    assert reply.code == 550, reply
    assert await pending(example) == [] and await history(example) == []


async def test_a_contacts_free_mail_address_matches_that_contact_exactly(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    document = factories.directory(contacts=[
        {"email": "bob@acme.com", "company": "acme"},
        {"email": "bob.bauer@gmx.de", "name": "Bob privat", "company": "acme"}])
    await load_directory(sessions, document)
    sender = "Bob Bauer <Bob.Bauer@GMX.de>"
    reply = await smtp.send(factories.mail(sender=sender, to="alice@xyz.de",
                                           subject="AW: XYZ Lead 11111"),
                            sender="bob.bauer@gmx.de")
    assert reply.code == 250, reply
    [entry] = await history(sessions)
    assert (entry["contact"], entry["company"], entry["lead"]) == ("bob.bauer@gmx.de", "acme",
                                                                   11111)
    other = "someone@gmx.de"  # the same free-mail domain says nothing about the company
    reply = await smtp.send(factories.mail(sender=other, to="alice@xyz.de"), sender=other)
    assert reply.code == 550, reply


async def test_a_free_mail_company_domain_is_refused_at_import_and_nothing_is_stored(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    document = factories.directory()
    document["tenants"][0]["companies"][0]["domains"] = ["acme.com", "web.de"]
    with pytest.raises(DirectoryImportError, match=r"'web\.de' is a free-mail domain"):
        await load_directory(sessions, document)
    async with sessions() as session:
        assert await tenant_by_slug(session, "xyz") is None
