"""Issue 9, rule 8 over SMTP on SQLite and PostgreSQL: machine mail is answered 250, never
filed or queued; it is kept as ignored when its sender is the tenant's and proven, and
nothing of it is stored otherwise.

The messages are the ones in fixtures/eml/conversation/machine (see its README).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from crm_mailer.db.engine import writing
from crm_mailer.db.models import InboundMessage
from crm_mailer.ingest import IngestConfig
from crm_mailer.leads.scope import tenant_scope
from crm_mailer.reconciliation import ReconciliationQueue
from crm_mailer.reconciliation.reprocess import reprocess
from crm_mailer.settings import Settings
from crm_mailer.smtp.server import SmtpServer
from tests import factories
from tests.conftest import SmtpClient, load_directory
from tests.integration.test_fixtures import received
from tests.integration.test_smtp_ingest import history, pending

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "eml"
MACHINE = FIXTURES / "conversation" / "machine"
SELECTOR = b"s2026"
MACHINE_REPLY = "2.0.0 Message accepted; machine mail is not filed"
# Alice's offer, which the German out-of-office and the read receipt answer.
OFFER_ID = "<5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f@xyz.de>"


def fixture(name: str) -> bytes:
    return (MACHINE / f"{name}.eml").read_bytes()


async def stored_messages(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(InboundMessage)) or 0)


@pytest.fixture
async def directory(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    """The fixtures' directory, and Alice's offer on lead 11111 filed."""
    await load_directory(sessions, json.loads((FIXTURES / "directory.json").read_text()))
    return sessions


async def send_offer(smtp: SmtpClient) -> None:
    offer = factories.mail(subject="XYZ Lead 11111 Angebot Website-Relaunch", to="bob@acme.com",
                           message_id=OFFER_ID)
    reply = await smtp.send(offer, sender="alice@xyz.de")
    assert reply.code == 250 and "filed" in reply.text, reply


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def signed(raw: bytes, key: rsa.RSAPrivateKey, domain: bytes = b"acme.com") -> bytes:
    """The message with a DKIM signature of `domain`, as Exchange Online signs its mail."""
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    return dkim.sign(raw, SELECTOR, domain, pem,
                     include_headers=[b"from", b"to", b"subject", b"message-id"]) + raw


@pytest.fixture
async def signing_smtp(directory: async_sessionmaker[AsyncSession], settings: Settings,
                       key: rsa.RSAPrivateKey) -> AsyncIterator[SmtpClient]:
    """A server whose resolver publishes the test key for acme.com."""
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    records = {b"s2026._domainkey.acme.com": b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)}
    server = SmtpServer(settings, directory, dns_txt=records.get)
    host, port = await server.start()
    yield SmtpClient(host, port)
    await server.stop(grace=5)


def only(messages: list[dict[str, Any]], message_id: str) -> dict[str, Any]:
    [message] = [m for m in messages if m["message_id"] == message_id.strip("<>")]
    return message


# --- the auto-replies that used to be filed ---------------------------------------------------

async def test_an_out_of_office_carrying_the_lead_number_is_ignored_not_filed(
        directory: async_sessionmaker[AsyncSession], signing_smtp: SmtpClient,
        key: rsa.RSAPrivateKey) -> None:
    """Exchange Online: MAIL FROM:<> and a DKIM signature of the customer's domain, which
    proves the From. Subject number, thread and lead name all point to lead 11111."""
    await send_offer(signing_smtp)
    reply = await signing_smtp.send(signed(fixture("outlook_ooo_de"), key), sender="")
    assert (reply.code, reply.text) == (250, MACHINE_REPLY)
    assert [e["message_id"] for e in await history(directory)] == [OFFER_ID.strip("<>")]
    assert await pending(directory) == []
    ooo = only(await received(directory, "xyz"),
               "FR3P281MB17345C6D7E8F9A0B1C2D3E4F5A6B7C8D@FR3P281MB1734.DEUP281.PROD.OUTLOOK.COM")
    # The null sender is read before the headers: what a machine sends with it is a report.
    assert (ooo["outcome"], ooo["reasons"]) == ("ignored", ["delivery_report"])
    assert ooo["machine"] == {"header": "MAIL FROM", "value": "<>"}
    assert (ooo["direction"], ooo["sender"], ooo["history"], ooo["pending"]) == \
        ("inbound", "bob@acme.com", None, None)


async def test_a_read_receipt_carrying_the_lead_number_is_ignored_not_filed(
        directory: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    await send_offer(smtp)
    reply = await smtp.send(fixture("read_receipt"), sender="bob@acme.com")
    assert (reply.code, reply.text) == (250, MACHINE_REPLY)
    assert len(await history(directory)) == 1 and await pending(directory) == []
    receipt = only(await received(directory, "xyz"), "000c01dcb2c9$a1b2c3d4$e5f6a7b8$@acme.com")
    assert (receipt["outcome"], receipt["reasons"]) == ("ignored", ["delivery_report"])
    assert receipt["machine"]["header"] == "Content-Type"


async def test_an_out_of_office_with_a_null_sender_and_no_proof_gets_250_and_is_dropped(
        directory: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    """Before rule 8 this was 550 (a null sender only for reports), and the relay bounced
    to nobody. Unproven, it is not stored; the log line says what and why."""
    with capture_logs() as logs:
        reply = await smtp.send(fixture("outlook_ooo_de"), sender="")
    assert (reply.code, reply.text) == (250, MACHINE_REPLY)
    assert await stored_messages(directory) == 0
    [event] = [e for e in logs if e["event"] == "message"]
    assert (event["tenant"], event["outcome"], event["reasons"]) == \
        ("xyz", "discarded", ["delivery_report"])
    assert event["evidence"] == "MAIL FROM: <>"
    assert "null envelope sender aligns with nothing" in event["refused"]
    assert event["message_id"] == \
        "FR3P281MB17345C6D7E8F9A0B1C2D3E4F5A6B7C8D@FR3P281MB1734.DEUP281.PROD.OUTLOOK.COM"


# --- senders the tenant does not take ------------------------------------------------------

@pytest.mark.parametrize("name, sender", [("exchange_ndr", ""),
                                          ("exchange_ndr", "postmaster@acme.onmicrosoft.com")])
async def test_robot_mail_from_an_unknown_domain_gets_250_and_stores_nothing(
        directory: async_sessionmaker[AsyncSession], smtp: SmtpClient, name: str,
        sender: str) -> None:
    reply = await smtp.send(fixture(name), sender=sender)
    assert (reply.code, reply.text) == (250, MACHINE_REPLY)
    assert await stored_messages(directory) == 0


async def test_an_unknown_party_s_auto_reply_is_dropped_but_its_person_s_mail_refused(
        directory: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    person = factories.mail(sender="info@shop.example", subject="Ihre Bestellung")
    robot = re.sub(rb"(?m)^Subject:", b"Auto-Submitted: auto-replied\r\nSubject:", person)
    assert (await smtp.send(person)).code == 550
    assert (await smtp.send(robot)).code == 250
    assert await stored_messages(directory) == 0


async def test_machine_mail_is_dropped_for_a_tenant_that_does_not_know_its_sender(
        directory: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    """Sabine is a contact of xyz only: xyz keeps her vacation reply, 'other' stores nothing."""
    reply = await smtp.send(fixture("gmail_vacation"),
                            sender="sabine.schmidt@mueller-gmail.example",
                            recipients=["crm@xyz.hq.example", "crm@crm.other.example"])
    assert (reply.code, reply.text) == (250, MACHINE_REPLY)
    [kept] = await received(directory, "xyz")
    assert (kept["outcome"], kept["reasons"]) == ("ignored", ["auto_reply"])
    assert await received(directory, "other") == []


# --- limits and ambiguity stay in force ----------------------------------------------------------

async def test_machine_mail_past_a_limit_is_still_refused(
        directory: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    raw = fixture("read_receipt")
    padded = b"X-Pad: y\r\n" * 1001 + raw
    reply = await smtp.send(padded, sender="bob@acme.com")
    assert (reply.code, reply.text[:5]) == (554, "5.6.0"), reply
    assert await stored_messages(directory) == 0


async def test_machine_mail_with_an_ambiguous_from_is_still_refused(
        directory: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    """Two From addresses name no author: refused as for any mail, whatever wrote it."""
    raw = fixture("read_receipt").replace(b'From: "Bob Bauer" <bob@acme.com>',
                                          b"From: bob@acme.com, carol@acme.com", 1)
    reply = await smtp.send(raw, sender="bob@acme.com")
    assert (reply.code, reply.text[:5]) == (550, "5.7.1") and "ambiguous" in reply.text


# --- lists ------------------------------------------------------------------------------------

async def test_a_contact_s_list_post_with_the_number_is_filed_like_any_mail(
        directory: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    raw = fixture("mailman_list_post").replace(b"Subject: [Partner-News] Wartungsfenster",
                                               b"Subject: [Partner-News] XYZ Lead 11111", 1)
    reply = await smtp.send(raw, sender="partner-news-bounces@lists.acme.com")
    assert reply.code == 250 and "filed" in reply.text, reply
    [entry] = await history(directory)
    assert (entry["lead"], entry["contact"], entry["direction"]) == (11111, "bob@acme.com",
                                                                     "inbound")


async def test_a_list_post_from_a_non_contact_of_a_company_domain_is_ignored(
        directory: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    reply = await smtp.send(fixture("mailman_list_announcement"),
                            sender="partner-news-bounces@lists.acme.com")
    assert (reply.code, reply.text) == (250, MACHINE_REPLY)
    [kept] = await received(directory, "xyz")
    assert (kept["outcome"], kept["reasons"], kept["sender"]) == \
        ("ignored", ["mailing_list"], "partner-team@acme.com")
    assert await history(directory) == [] and await pending(directory) == []


# --- once, and left alone ------------------------------------------------------------------------

async def test_a_redelivered_ignored_message_is_stored_once(
        directory: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    for _ in range(2):
        reply = await smtp.send(fixture("read_receipt"), sender="bob@acme.com")
    assert (reply.code, reply.text) == (250, "2.0.0 Message already received")
    assert await stored_messages(directory) == 1


async def test_rematch_and_reprocess_leave_ignored_mail_alone(
        directory: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    await smtp.send(fixture("read_receipt"), sender="bob@acme.com")
    await smtp.send(fixture("gmail_vacation"), sender="sabine.schmidt@mueller-gmail.example")
    before = await received(directory, "xyz")
    async with writing(directory) as session:
        tenant = await tenant_scope(session, "xyz")
        report = await ReconciliationQueue(session, tenant).rematch()
        again = await reprocess(session, tenant, IngestConfig())
    assert (report.filed, report.updated, report.unchanged) == (0, 0, 0)
    assert not again
    assert await received(directory, "xyz") == before
    assert [m["outcome"] for m in before] == ["ignored", "ignored"]


async def test_unprocessable_machine_mail_is_ignored_when_reprocessed(
        directory: async_sessionmaker[AsyncSession], smtp: SmtpClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from crm_mailer.matching import pipeline

    def broken(*args: object) -> object:
        raise ZeroDivisionError("a deterministic bug")

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "run", broken)
        reply = await smtp.send(fixture("read_receipt"), sender="bob@acme.com")
    assert "could not be processed" in reply.text
    [waiting] = await pending(directory)
    async with writing(directory) as session:
        report = await reprocess(session, await tenant_scope(session, "xyz"), IngestConfig())
    assert report == {"ignored": 1}
    assert await pending(directory) == [] and await history(directory) == []
    [kept] = await received(directory, "xyz")
    assert (kept["outcome"], kept["reasons"]) == ("ignored", ["delivery_report"])
    assert kept["pending"] == waiting["id"]
    assert kept["note"].startswith("machine mail (delivery_report): Content-Type: "
                                   "multipart/report")
