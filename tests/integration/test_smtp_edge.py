"""The SMTP edge: who may deliver, what is refused, and that nothing is stored twice."""

from __future__ import annotations

import asyncio
import smtplib

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer.db.models import InboundMessage
from tests import factories
from tests.conftest import SmtpClient, load_directory
from tests.integration.test_smtp_ingest import history, pending


async def stored_messages(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(InboundMessage)) or 0)


async def test_other_local_part_at_a_tenant_host_is_refused(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    reply = await smtp.rcpt("sales@xyz.hq.example")
    assert (reply.code, reply.text[:5]) == (550, "5.1.1")


async def test_never_an_open_relay(example: async_sessionmaker[AsyncSession],
                                   smtp: SmtpClient) -> None:
    for recipient in ("crm@gmail.example", "bob@acme.com", "crm@xyz.hq.example.evil.example",
                      "crm@[127.0.0.1]", "crm%acme.com@xyz.hq.example"):
        reply = await smtp.send(factories.mail(), recipients=[recipient])
        assert (reply.code, reply.text[:5]) == (550, "5.1.1"), recipient
    assert await stored_messages(example) == 0


async def test_recipient_case_does_not_matter(example: async_sessionmaker[AsyncSession],
                                              smtp: SmtpClient) -> None:
    reply = await smtp.send(factories.mail(), recipients=["CRM@XYZ.HQ.EXAMPLE"])
    assert reply.code == 250
    assert len(await history(example)) == 1


async def test_unicode_host_accepts_its_punycode_and_utf8_forms(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    await load_directory(sessions, factories.directory(hosts=["büro-abc.example"]))
    reply = await smtp.send(factories.mail(), recipients=["crm@xn--bro-abc-n2a.example"])
    assert reply.code == 250, reply

    def utf8_rcpt() -> int:
        with smtplib.SMTP(smtp.host, smtp.port) as client:
            client.ehlo()
            assert client.has_extn("smtputf8")
            client.command_encoding = "utf-8"
            client.mail("alice@xyz.de", ["SMTPUTF8"])
            return client.rcpt("crm@büro-abc.example")[0]

    assert await asyncio.to_thread(utf8_rcpt) == 250


async def test_unauthorized_sender_is_refused_and_nothing_is_stored(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    raw = factories.mail(sender="Mallory <mallory@evil.example>")
    reply = await smtp.send(raw, sender="mallory@evil.example")
    assert (reply.code, reply.text[:5]) == (550, "5.7.1")
    assert await stored_messages(example) == 0


async def test_a_from_the_envelope_does_not_align_with_is_not_proven_by_default(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    # MAIL FROM:<evil@evil.com> with From: alice@xyz.de used to be filed as Alice's.
    reply = await smtp.send(factories.mail(), sender="evil@evil.com")
    assert (reply.code, reply.text[:5]) == (550, "5.7.1"), reply
    assert "not proven under policy 'aligned'" in reply.text
    assert await stored_messages(example) == 0


async def test_a_verp_envelope_sender_on_the_tenants_domain_is_still_filed(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    reply = await smtp.send(factories.mail(), sender="bounces+77@relay.xyz.de")
    assert reply.code == 250 and "filed" in reply.text, reply


async def test_the_header_policy_trusts_the_from_as_before(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    # A forwarding relay rewrites the envelope (SRS) and nothing is signed: only the
    # weaker policy 'header' files such mail; an unknown From is refused all the same.
    await load_directory(sessions, factories.directory(sender_policy="header"))
    reply = await smtp.send(factories.mail(), sender="SRS0=abc=xy=xyz.de=alice@relay.example")
    assert reply.code == 250, reply
    spoofed = factories.mail(sender="mallory@evil.example")
    assert (await smtp.send(spoofed, sender="alice@xyz.de")).code == 550


async def test_without_from_the_envelope_sender_counts_only_under_the_header_policy(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    raw = b"To: bob@acme.com\r\nSubject: XYZ Lead 11111\r\n\r\nHallo\r\n"
    await load_directory(sessions, factories.directory())
    reply = await smtp.send(raw, sender="alice@xyz.de")
    assert (reply.code, reply.text[:5]) == (550, "5.7.1"), reply
    await load_directory(sessions, factories.directory(sender_policy="header"))
    assert (await smtp.send(raw, sender="alice@xyz.de")).code == 250
    [entry] = await history(sessions)
    assert entry["sender"] == "alice@xyz.de"


async def test_a_null_envelope_sender_is_machine_mail_answered_250_and_never_filed(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    """MAIL FROM:<> is what machines send (issue 9, rule 8): no bounce, no history. The
    null sender proves no From, so under 'aligned' nothing of it is stored either."""
    reply = await smtp.send(factories.mail(), sender="")
    assert (reply.code, reply.text) == (250, "2.0.0 Message accepted; machine mail is not filed")
    assert await history(example) == [] and await pending(example) == []
    assert await stored_messages(example) == 0


async def test_redelivery_of_the_same_message_id_is_accepted_once(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    raw = factories.mail(message_id="<once@xyz.de>")
    for _ in range(3):
        reply = await smtp.send(raw)
        assert reply.code == 250
    assert "already" in reply.text
    assert len(await history(example)) == 1


async def test_concurrent_redeliveries_store_one_entry(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    raw = factories.mail(message_id="<race@xyz.de>")
    replies = await asyncio.gather(*(smtp.send(raw) for _ in range(6)))
    assert [r.code for r in replies] == [250] * 6
    assert len(await history(example)) == 1
    assert await stored_messages(example) == 1


async def test_message_without_message_id_is_stored_once(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    raw = factories.mail(message_id=None)
    assert (await smtp.send(raw)).code == 250
    assert (await smtp.send(raw)).code == 250
    [entry] = await history(example)
    assert entry["message_id"].endswith("@derived.crm-mailer.invalid")


async def test_mail_for_two_tenants_is_judged_per_tenant(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    document = factories.directory()
    document["tenants"].append(factories.second_tenant())
    await load_directory(sessions, document)
    both = ["crm@xyz.hq.example", "crm@crm.other.example"]

    reply = await smtp.send(factories.mail(), recipients=both)
    assert reply.code == 250
    assert len(await history(sessions, "xyz")) == 1
    assert await history(sessions, "other") == [] and await pending(sessions, "other") == []

    # The customer writes to both of its suppliers: inbound for each, each on its own lead.
    reply = await smtp.send(factories.mail(sender="bob@acme.com", to="alice@xyz.de",
                                           subject="Re: Lead 11111"),
                            sender="bob@acme.com", recipients=both)
    assert reply.code == 250
    xyz, other = await history(sessions, "xyz"), await history(sessions, "other")
    assert len(xyz) == 2 and len(other) == 1
    assert other[0]["lead"] == 11111 and other[0]["direction"] == "inbound"
    async with sessions() as session:  # neither copy tells of the other tenant
        envelopes = sorted(tuple(m.envelope_recipients) for m in await session.scalars(
            select(InboundMessage).where(InboundMessage.sender == "bob@acme.com")))
    assert envelopes == [("crm@crm.other.example",), ("crm@xyz.hq.example",)]

    refused = factories.mail(sender="mallory@evil.example")
    assert (await smtp.send(refused, sender="mallory@evil.example", recipients=both)).code == 550


async def test_tenants_never_see_each_others_directory(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    document = factories.directory()
    other = factories.second_tenant()
    other["leads"] = [{"number": 77777, "name": "only other's", "company": "acme"}]
    document["tenants"].append(other)
    await load_directory(sessions, document)
    # xyz mail naming other's lead number: unknown for xyz.
    assert (await smtp.send(factories.mail(subject="Lead 77777"))).code == 250
    [queued] = await pending(sessions, "xyz")
    assert queued["reasons"] == ["unknown_number"]
    assert queued["candidates"]["leads"] == [11111]  # xyz's own single open lead, suggested
    # other's own sender: xyz's contact bob is not other's authorization source for xyz.
    raw = factories.mail(sender="eve@other.example", subject="Lead 11111")
    assert (await smtp.send(raw, sender="eve@other.example")).code == 550
    assert await pending(sessions, "other") == []


async def test_the_same_message_id_for_two_tenants_is_stored_for_each(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    document = factories.directory()
    other = factories.second_tenant()
    other["sender_domains"] = ["xyz.de"]
    document["tenants"].append(other)
    await load_directory(sessions, document)
    raw = factories.mail(message_id="<shared@xyz.de>")
    assert (await smtp.send(raw, recipients=["crm@xyz.hq.example"])).code == 250
    assert (await smtp.send(raw, recipients=["crm@crm.other.example"])).code == 250
    assert len(await history(sessions, "xyz")) == 1
    assert len(await history(sessions, "other")) == 1


async def test_uncertain_mail_is_queued_with_reasons_and_candidates(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    reply = await smtp.send(factories.mail(subject="Angebot (Lead 11111)"))
    assert reply.code == 250 and "confirmation" in reply.text
    [item] = await pending(example)
    assert item["reasons"] == ["no_number"]
    # 11111: acme's single open lead, the suggestion (issue 9, rule 4).
    assert item["candidates"] == {"leads": [11111], "projects": [], "contacts": ["bob@acme.com"],
                                  "companies": ["acme"]}
    assert await history(example) == []


async def test_long_lines_and_big_messages_are_accepted(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    html = "<p>" + "x" * 60_000 + "</p>"
    raw = factories.mail(html=html, body="")
    raw = raw.replace(b"Content-Transfer-Encoding: quoted-printable",
                      b"Content-Transfer-Encoding: 8bit")
    assert (await smtp.send(raw)).code == 250


async def test_oversized_message_gets_552_and_the_server_keeps_serving(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    raw = factories.mail(body="y" * 100 + "\n" + ("z" * 900 + "\n") * 40_000)
    reply = await smtp.send(raw)
    assert reply.code == 552
    assert (await smtp.send(factories.mail())).code == 250


GARBAGE = (b"", b"\x00\xff\xfe garbage \x80\r\n", b"Subject: =?bogus?Q?=ZZ?=\r\n\r\n",
           b"From: <<<>>>@@@\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\n")


async def test_garbage_without_a_provable_from_gets_a_clear_refusal(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    for raw in GARBAGE:
        reply = await smtp.send(raw, sender="alice@xyz.de")
        assert (reply.code, reply.text[:5]) == (550, "5.7.1"), (raw, reply)
    assert (await smtp.send(factories.mail())).code == 250


async def test_garbage_is_queued_under_the_header_policy(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    await load_directory(sessions, factories.directory(sender_policy="header"))
    for raw in GARBAGE:
        reply = await smtp.send(raw, sender="alice@xyz.de")
        assert reply.code == 250, (raw, reply)
    assert len(await pending(sessions)) == 4
    assert (await smtp.send(factories.mail())).code == 250


async def test_too_many_recipients_get_452(example: async_sessionmaker[AsyncSession],
                                           smtp: SmtpClient) -> None:
    def run() -> list[int]:
        with smtplib.SMTP(smtp.host, smtp.port) as client:
            client.ehlo()
            client.mail("alice@xyz.de")
            return [client.rcpt("crm@xyz.hq.example")[0] for _ in range(101)]

    codes = await asyncio.to_thread(run)
    assert codes[:100] == [250] * 100 and codes[100] == 452
