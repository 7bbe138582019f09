"""Hostile and broken mail over real sockets, on SQLite and PostgreSQL (issue 7's findings).

Every finding has a test here: no stall, no endless 4xx, exact Message-IDs, no forged
filing through the header, no bounce for want of a directory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import smtplib
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from crm_mailer import ingest
from crm_mailer.db import repositories
from crm_mailer.db.engine import writing
from crm_mailer.db.models import InboundMessage, PendingMatch, PendingState
from crm_mailer.ingest import IngestConfig
from crm_mailer.leads.scope import tenant_scope
from crm_mailer.mail.parse import Limits
from crm_mailer.matching import pipeline
from crm_mailer.reconciliation.reprocess import reprocess
from crm_mailer.settings import Settings
from crm_mailer.smtp.server import SmtpServer
from tests import factories
from tests.conftest import Reply, SmtpClient, load_directory, no_dns
from tests.integration.test_smtp_ingest import history, pending


async def stored_ids(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return list(await session.scalars(select(InboundMessage.message_id)
                                          .order_by(InboundMessage.id)))


def raw_session(smtp: SmtpClient, lines: list[bytes], data: bytes | None = None) -> list[str]:
    """Send command lines as bytes, exactly (no smtplib line-end repair); every reply."""
    replies: list[str] = []
    with socket.create_connection((smtp.host, smtp.port), timeout=30) as sock:
        stream = sock.makefile("rb")

        def reply() -> str:
            text = b""
            while True:
                line = stream.readline()
                text += line
                if len(line) < 4 or line[3:4] != b"-":
                    return text.decode("utf-8", "replace").strip()

        reply()  # greeting
        for line in lines:
            sock.sendall(line + b"\r\n")
            replies.append(reply())
        if data is not None:
            sock.sendall(b"DATA\r\n")
            replies.append(reply())
            sock.sendall(data + b"\r\n.\r\n")
            replies.append(reply())
        sock.sendall(b"QUIT\r\n")
    return replies


def envelope(sender: bytes = b"alice@xyz.de",
             recipient: bytes = b"crm@xyz.hq.example") -> list[bytes]:
    return [b"EHLO client.test", b"MAIL FROM:<" + sender + b">", b"RCPT TO:<" + recipient + b">"]


# --- 1. no stall --------------------------------------------------------------------------

async def test_an_address_bomb_does_not_hold_up_another_session(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    bomb = (b"From: alice@xyz.de\r\nTo: " + b"," * 60_000 + b"\r\nSubject: x\r\n\r\nx\r\n")

    def noop_latencies() -> list[float]:
        found = []
        with smtplib.SMTP(smtp.host, smtp.port, timeout=30) as client:
            for _ in range(20):
                started = time.perf_counter()
                client.noop()
                found.append(time.perf_counter() - started)
                time.sleep(0.02)
        return found

    sending = asyncio.create_task(smtp.send(bomb))
    latencies = await asyncio.to_thread(noop_latencies)
    reply = await sending
    assert reply.code == 250, reply
    assert max(latencies) < 0.5, latencies


async def test_an_address_header_longer_than_its_addresses_can_need_is_refused_fast(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    bomb = (b"From: alice@xyz.de\r\nTo: " + b"," * 200_000 + b"\r\nSubject: x\r\n\r\nx\r\n")
    started = time.process_time()  # the server's work, in this process: not stretched by load
    reply = await smtp.send(bomb)
    assert (reply.code, reply.text[:5]) == (554, "5.6.0"), reply
    assert "To header is longer than 128000 bytes" in reply.text
    assert time.process_time() - started < 2


async def test_too_many_addresses_in_one_header_are_refused_naming_the_limit(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    raw = factories.mail(to=", ".join(f"p{i}@acme.com" for i in range(1001)))
    reply = await smtp.send(raw)
    assert (reply.code, reply.text[:5]) == (554, "5.6.0"), reply
    assert "max_addresses_per_header" in reply.text
    assert await stored_ids(example) == []


async def test_an_oversized_header_block_is_refused_naming_the_limit(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    raw = b"From: alice@xyz.de\r\n" + b"X-Pad: " + b"y" * 990 + b"\r\n" * 1 \
        + b"".join(b"X-Pad: " + b"y" * 990 + b"\r\n" for _ in range(300)) + b"\r\nbody\r\n"
    reply = await smtp.send(raw)
    assert (reply.code, reply.text[:5]) == (552, "5.3.4"), reply
    assert "max_header_size" in reply.text


# --- 2. exact Message-IDs -----------------------------------------------------------------

def _send_utf8(smtp: SmtpClient, raw: bytes) -> int:
    with smtplib.SMTP(smtp.host, smtp.port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("alice@xyz.de", ["SMTPUTF8", "BODY=8BITMIME"])
        client.rcpt("crm@xyz.hq.example")
        return client.data(raw)[0]


async def test_message_ids_differing_in_one_letter_are_two_messages(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    for letter in ("ä", "ö"):
        raw = factories.mail(message_id=None).replace(
            b"Subject:", f"Message-ID: <{letter}42@r>\r\nSubject:".encode(), 1)
        assert await asyncio.to_thread(_send_utf8, smtp, raw) == 250
    assert await stored_ids(example) == ["ä42@r", "ö42@r"]
    assert len(await history(example)) == 2


async def test_a_nul_byte_in_a_message_id_makes_another_message(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    for message_id in (b"<nul\x00id@x>", b"<nulid@x>"):
        raw = factories.mail(message_id=None).replace(
            b"Subject:", b"Message-ID: " + message_id + b"\r\nSubject:", 1)
        assert (await smtp.send(raw)).code == 250
    ids = await stored_ids(example)
    assert len(ids) == 2 and "nulid@x" in ids and all("\x00" not in i for i in ids)


# --- 3. no endless 4xx --------------------------------------------------------------------

async def test_a_subject_number_of_thousands_of_digits_is_no_number(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    reply = await smtp.send(factories.mail(subject="Lead " + "9" * 5000))
    assert reply.code == 250 and "waiting for confirmation" in reply.text, reply
    assert (await pending(example))[0]["reasons"] == ["no_number"]


async def test_deeply_nested_comments_in_to_get_a_clear_answer(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    raw = factories.mail(to=None).replace(
        b"Subject:", b"To: " + b"(" * 500 + b"x" + b")" * 500 + b" bob@acme.com\r\nSubject:", 1)
    reply = await smtp.send(raw)
    assert reply.code == 250, reply
    assert (await history(example))[0]["contact"] == "bob@acme.com"


async def test_a_from_address_that_outgrows_its_column_when_lower_cased_is_refused(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    raw = factories.mail(sender="x@y.de").replace(
        b"From: x@y.de", ("From: " + "İ" * 200 + "@xyz.de").encode(), 1)
    reply = await asyncio.to_thread(_send_utf8, smtp, raw)
    assert reply == 550
    assert await stored_ids(example) == []


async def test_an_8bit_byte_in_rcpt_to_gets_a_permanent_syntax_reply(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    bad = envelope(recipient=b"crm\xff@xyz.hq.example")
    replies = await asyncio.to_thread(raw_session, smtp, bad)
    assert replies[-1].startswith("501 5.1.3"), replies
    replies = await asyncio.to_thread(raw_session, smtp, envelope(sender=b"al\xffice@xyz.de"))
    assert replies[1].startswith("501 5.1.7"), replies


async def test_a_bug_while_matching_keeps_the_mail_as_unprocessable_and_answers_250(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> object:
        raise ZeroDivisionError("a deterministic bug")

    monkeypatch.setattr(pipeline, "run", broken)
    raw = factories.mail(message_id="<poison@xyz.de>")
    first = await smtp.send(raw)
    assert first.code == 250 and "could not be processed" in first.text, first
    again = await smtp.send(raw)  # the relay's retry is a duplicate, not a second copy
    assert again.code == 250 and "already received" in again.text
    waiting = await pending(example)
    assert [(p["reasons"], p["message_id"]) for p in waiting] == \
        [(["unprocessable"], "poison@xyz.de")]
    assert "ZeroDivisionError: a deterministic bug" in waiting[0]["error"]
    assert await history(example) == []


# --- 4. the From is a claim ---------------------------------------------------------------

@pytest.mark.parametrize("header", [
    b"From: alice@xyz.de\r\nFrom: evil@evil.com\r\n",
    b"From: alice@xyz.de, evil@evil.com\r\n",
])
async def test_an_ambiguous_from_is_refused(example: async_sessionmaker[AsyncSession],
                                            smtp: SmtpClient, header: bytes) -> None:
    raw = header + b"To: bob@acme.com\r\nSubject: XYZ Lead 11111\r\n\r\nHallo\r\n"
    reply = await smtp.send(raw)
    assert (reply.code, reply.text[:5]) == (550, "5.7.1") and "ambiguous" in reply.text
    assert await stored_ids(example) == []


async def test_a_from_line_hidden_behind_a_bare_cr_is_refused(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    data = (b"X-Note: harmless\rFrom: alice@xyz.de\r\nFrom: evil@evil.com\r\n"
            b"To: bob@acme.com\r\nSubject: XYZ Lead 11111\r\n\r\nHallo")
    replies = await asyncio.to_thread(raw_session, smtp, envelope(sender=b"evil@evil.com"), data)
    assert replies[-1].startswith("554 5.6.0") and "bare CR or LF" in replies[-1], replies
    assert await stored_ids(example) == []


async def test_a_message_with_lf_line_ends_throughout_is_read_by_lf(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    # A script's message sent as bytes keeps its LFs (smtplib converts only str): there is
    # no second reading of its lines, so nothing can hide in them.
    data = (b"From: alice@xyz.de\nTo: bob@acme.com\nSubject: XYZ Lead 11111\n"
            b"Message-ID: <lf@xyz.de>\n\nHallo Bob")
    replies = await asyncio.to_thread(raw_session, smtp, envelope(), data)
    assert replies[-1].startswith("250 2.0.0 Message accepted and filed"), replies
    assert (await history(example))[0]["contact"] == "bob@acme.com"


# --- 6. no bounce for want of configuration -----------------------------------------------

async def test_an_empty_directory_defers_instead_of_bouncing(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    reply = await smtp.send(factories.mail())
    assert (reply.code, reply.text[:5]) == (451, "4.3.0"), reply
    assert "No tenant is configured" in reply.text


async def test_with_a_tenant_an_unknown_host_is_still_refused(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    reply: Reply = await smtp.rcpt("crm@unknown.example")
    assert (reply.code, reply.text[:5]) == (550, "5.1.1")


async def test_reprocess_files_unprocessable_mail_once_the_bug_is_fixed(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> object:
        raise ZeroDivisionError("a deterministic bug")

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "run", broken)
        assert (await smtp.send(factories.mail(message_id="<fixed@xyz.de>"))).code == 250
        assert (await smtp.send(factories.mail(message_id="<other@xyz.de>",
                                               subject="no number"))).code == 250
    async with writing(example) as session:
        tenant = await tenant_scope(session, "xyz")
        report = await reprocess(session, tenant, IngestConfig())
    assert report == {"filed": 1, "queued": 1}
    [entry] = await history(example)
    assert (entry["message_id"], entry["lead"], entry["filed_by"]) == \
        ("fixed@xyz.de", 11111, "crm-mailer (reprocess)")
    [waiting] = await pending(example)
    assert waiting["message_id"] == "other@xyz.de" and waiting["reasons"] == ["no_number"]
    assert waiting["error"] is None and waiting["subject"] == "no number"
    async with writing(example) as session:  # nothing is left to reprocess
        tenant = await tenant_scope(session, "xyz")
        assert await reprocess(session, tenant, IngestConfig()) == \
            {"skipped (not unprocessable)": 1}


async def test_reprocess_rejects_mail_the_tenants_policy_now_refuses(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "run", lambda *args: 1 / 0)
        assert (await smtp.send(factories.mail())).code == 250
    await load_directory(example, factories.directory(sender_policy="dkim"))
    async with writing(example) as session:
        tenant = await tenant_scope(session, "xyz")
        report = await reprocess(session, tenant, IngestConfig())
    assert report == {"refused": 1}
    assert await pending(example) == []  # rejected: kept for audit, no longer waiting
    async with example() as session:
        item = await session.scalar(select(PendingMatch))
        assert item is not None and item.state is PendingState.REJECTED
        assert "not proven under policy 'dkim'" in (item.note or "")


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "eml"
READ = ("direction", "sender", "recipients_to", "recipients_cc", "subject", "sent_at", "body",
        "attachments", "evidence", "error", "ignored", "thread_references", "forwarded")


def broken(*args: object) -> object:
    raise ZeroDivisionError("a deterministic bug")


async def reprocess_xyz(sessions: async_sessionmaker[AsyncSession],
                        config: IngestConfig | None = None) -> Counter[str]:
    async with writing(sessions) as session:
        tenant = await tenant_scope(session, "xyz")
        return await reprocess(session, tenant, config or IngestConfig())


async def what_was_read(sessions: async_sessionmaker[AsyncSession]) -> dict[str, dict[str, Any]]:
    """Per Message-ID, what was stored of the mail and, while it waits, why and for what."""
    async with sessions() as session:
        read = {m.message_id: {name: getattr(m, name) for name in READ}
                for m in await session.scalars(select(InboundMessage))}
        for item in await session.scalars(select(PendingMatch).where(
                PendingMatch.state == PendingState.WAITING)):
            read[item.message.message_id] |= {"reasons": item.reasons,
                                              "candidates": item.candidates}
    return read


def fixture_case(name: str) -> tuple[bytes, str]:
    """A fixture message and the envelope sender it comes with."""
    envelope = json.loads((FIXTURES / f"{name}.expected.json").read_text())["envelope"]
    return (FIXTURES / f"{name}.eml").read_bytes(), envelope["from"]


NO_FROM = factories.mail(message_id="<no-from@xyz.de>").replace(
    b"From: Alice Adler <alice@xyz.de>\r\n", b"")


@pytest.mark.parametrize(("raw", "sender"), [
    fixture_case("forward_with_attachment"), fixture_case("inbound_reply"),
    fixture_case("outbound_cc_header"), fixture_case("hostile/null_sender_delivery_report"),
    # An out-of-office with MAIL FROM:<>: reprocessing reads the stored envelope sender too.
    fixture_case("conversation/machine/outlook_ooo_en"),
    (NO_FROM, "alice@xyz.de"),  # the envelope sender stands in for the From
    # A forward to crm@ alone (its original is stored) and a queued mail (its candidates).
    ((FIXTURES / "conversation/forward/gmail_en.eml").read_bytes(), "alice@xyz.de"),
    (factories.mail(message_id="<queued@xyz.de>", subject="Angebot ohne Nummer"),
     "alice@xyz.de"),
], ids=["forward_with_attachment", "inbound_reply", "outbound_cc_header",
        "null_sender_report", "null_sender_out_of_office", "no_from", "forward_to_crm",
        "queued"])
async def test_reprocessed_mail_is_stored_as_if_it_had_been_read_at_once(
        raw: bytes, sender: str, sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Policy 'header' lets the null-sender report and the mail without From in; the mail is
    # kept unprocessable, then a copy under another Message-ID is read at once: after
    # reprocessing they agree.
    document = json.loads((FIXTURES / "directory.json").read_text())
    for tenant in document["tenants"]:
        tenant["sender_policy"] = "header"
    await load_directory(sessions, document)
    copy = re.sub(rb"(?im)^message-id:[^\r\n]*", b"Message-ID: <at-once@test>", raw, count=1)
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "run", broken)
        assert (await smtp.send(raw, sender=sender, recipients=["crm@xyz.hq.example"])
                ).code == 250
    assert (await smtp.send(copy, sender=sender, recipients=["crm@xyz.hq.example"])).code == 250
    report = await reprocess_xyz(sessions)
    report.pop("skipped (not unprocessable)", None)  # the copy, if it waits too
    assert report in ({"filed": 1}, {"queued": 1}, {"ignored": 1}), report
    read = await what_was_read(sessions)
    at_once = read.pop("at-once@test")
    [reprocessed] = read.values()
    assert reprocessed == at_once


async def test_mail_that_still_fails_stays_unprocessable_with_the_new_error(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "run", broken)
        assert (await smtp.send(factories.mail())).code == 250

    def another_bug(*args: object) -> object:
        raise KeyError("another bug")

    monkeypatch.setattr(pipeline, "run", another_bug)
    with capture_logs() as logs:
        assert await reprocess_xyz(example) == {"still unprocessable": 1}
    [waiting] = await pending(example)
    assert waiting["reasons"] == ["unprocessable"]
    assert "KeyError" in waiting["error"] and "ZeroDivisionError" not in waiting["error"]
    [logged] = [e for e in logs if e["event"] == "reprocess.failed"]  # for the operator
    assert (logged["tenant"], logged["pending"]) == ("xyz", waiting["id"])


async def test_reprocess_goes_through_every_waiting_mail_and_counts_each(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for subject in ("ohne Nummer", "auch ohne Nummer"):  # waiting, but not unprocessable
        assert (await smtp.send(factories.mail(subject=subject))).code == 250
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "run", broken)
        for _ in range(2):
            assert (await smtp.send(factories.mail())).code == 250
    assert len(await pending(example)) == 4
    assert await reprocess_xyz(example) == {"skipped (not unprocessable)": 2, "filed": 2}


async def test_reprocess_of_ids_no_item_can_have_touches_nothing(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """IDs past the column's range are not asked for; naming only such IDs names no item,
    not some stand-in: the first item of a fresh database (id 1) stays as it is."""
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "run", broken)
        assert (await smtp.send(factories.mail())).code == 250
    [waiting] = await pending(example)
    assert waiting["id"] == 1 and waiting["reasons"] == ["unprocessable"]
    async with writing(example) as session:
        tenant = await tenant_scope(session, "xyz")
        report = await reprocess(session, tenant, IngestConfig(),
                                 pending_ids=[2**63, 10**30])
    assert report == {}
    assert [item["id"] for item in await pending(example)] == [1]


async def test_reprocess_leaves_other_tenants_mail_alone(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    document = factories.directory()
    document["tenants"].append(factories.second_tenant())
    await load_directory(sessions, document)
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "run", broken)
        assert (await smtp.send(factories.mail())).code == 250
        assert (await smtp.send(factories.mail(sender="olga@other.example"),
                                recipients=["crm@crm.other.example"])).code == 250
    assert await reprocess_xyz(sessions) == {"filed": 1}
    [theirs] = await pending(sessions, "other")
    assert theirs["reasons"] == ["unprocessable"] and "ZeroDivisionError" in theirs["error"]


async def test_reprocess_under_review_all_files_the_mail_and_keeps_it_for_a_check(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    await load_directory(sessions, factories.directory(review="all"))
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "run", broken)
        assert (await smtp.send(factories.mail())).code == 250
    assert await reprocess_xyz(sessions) == {"filed": 1}
    [entry] = await history(sessions)
    [waiting] = await pending(sessions)
    assert (entry["lead"], waiting["message_id"], waiting["reasons"]) == (
        11111, entry["message_id"], ["review"])


async def test_reprocess_applies_the_limits_configured_now(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "run", broken)
        assert (await smtp.send(factories.mail())).code == 250
    assert await reprocess_xyz(example, IngestConfig(limits=Limits(max_headers=3))) == \
        {"refused": 1}
    async with example() as session:
        item = await session.scalar(select(PendingMatch))
        assert item is not None and item.state is PendingState.REJECTED
        assert "max_headers" in (item.note or ""), item.note


async def test_reprocess_reads_a_message_stored_in_slices(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    raw = factories.mail(body="Zeile\n" * 200_000)  # over a 1 MiB slice
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "run", broken)
        assert (await smtp.send(raw)).code == 250
    assert await reprocess_xyz(example) == {"filed": 1}
    [entry] = await history(example)
    assert entry["lead"] == 11111 and entry["body"].startswith("Zeile\nZeile")


async def test_a_large_message_is_stored_in_slices_and_read_back_exactly(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    raw = factories.mail(body="Zeile\n" * 600_000)  # ~4 MB: a few slices
    assert (await smtp.send(raw)).code == 250
    async with example() as session:
        message = await session.scalar(select(InboundMessage))
        assert message is not None and message.raw == b""
        assert message.raw_chunks == -(-len(raw) // repositories.RAW_CHUNK) > 1
        assert await repositories.raw_message(session, message) == raw


async def test_reading_past_the_processing_timeout_keeps_the_mail_as_unprocessable(
        example: async_sessionmaker[AsyncSession], settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = ingest.parse_message

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.5)  # a reading that takes longer than the budget, deterministically
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest, "parse_message", slow)
    hurried = dataclasses.replace(settings, processing_timeout=0.1)
    server = SmtpServer(hurried, example, dns_txt=no_dns)
    host, port = await server.start()
    try:
        reply = await SmtpClient(host, port).send(factories.mail())
    finally:
        await server.stop(grace=5)
    assert reply.code == 250 and "could not be processed" in reply.text, reply
    [waiting] = await pending(example)
    assert waiting["reasons"] == ["unprocessable"]
    assert "processing_timeout" in waiting["error"]
