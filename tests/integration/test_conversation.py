"""Issue 9, rules 2-4 over SMTP on SQLite and PostgreSQL: replies follow their thread,
a lead's name in the subject decides, and a company's single open lead is suggested."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests import factories
from tests.conftest import SmtpClient, load_directory
from tests.integration.test_reconciliation import decide, directory
from tests.integration.test_smtp_ingest import history, pending

BOB = "Bob Bauer <bob@acme.com>"
HANK = "hank@globex.example"


@pytest.fixture
async def crm(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    document = directory()
    document["tenants"][0]["contacts"].append({"email": HANK, "company": "globex"})
    await load_directory(sessions, document)
    return sessions


async def send(smtp: SmtpClient, *, recipients: list[str] | None = None,
               **mail: Any) -> None:
    sender = mail.get("sender", "alice@xyz.de")
    envelope = sender.rpartition("<")[2].rstrip(">")
    reply = await smtp.send(factories.mail(**mail), sender=envelope,
                            recipients=recipients or ["crm@xyz.hq.example"])
    assert reply.code == 250, reply


def reply_to(message_id: str, *earlier: str) -> dict[str, str]:
    return {"In-Reply-To": message_id, "References": " ".join((*earlier, message_id))}


async def test_a_customers_reply_without_number_follows_the_filed_mail(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    await send(smtp, subject="Angebot Lead 11111", message_id="<offer@xyz.de>")
    await send(smtp, sender=BOB, to="alice@xyz.de", subject="AW: Angebot",
               message_id="<answer@acme.com>", headers=reply_to("<offer@xyz.de>"))
    await send(smtp, subject="AW: AW: Angebot", message_id="<again@xyz.de>",
               headers=reply_to("<answer@acme.com>", "<offer@xyz.de>"))
    entries = sorted(await history(crm), key=lambda e: e["id"])
    assert [(e["message_id"], e["lead"], e["contact"]) for e in entries] == [
        ("offer@xyz.de", 11111, "bob@acme.com"),
        ("answer@acme.com", 11111, "bob@acme.com"),
        ("again@xyz.de", 11111, "bob@acme.com")]
    assert await pending(crm) == []


async def test_the_nearest_filed_ancestor_counts_and_unknown_ids_are_skipped(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    await send(smtp, subject="Projekt 20001", message_id="<project@xyz.de>")
    await send(smtp, subject="Lead 11111", message_id="<lead@xyz.de>")
    headers = {"In-Reply-To": "<unknown@elsewhere.example>",
               "References": "<project@xyz.de> <lead@xyz.de> <unknown@elsewhere.example>"}
    await send(smtp, sender=BOB, to="alice@xyz.de", subject="Re: Frage",
               message_id="<reply@acme.com>", headers=headers)
    [entry] = [e for e in await history(crm) if e["message_id"] == "reply@acme.com"]
    assert (entry["lead"], entry["project"]) == (11111, None)


async def test_a_reply_to_waiting_mail_waits_and_follows_once_a_person_confirmed(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    await send(smtp, subject="Rückfrage", message_id="<question@xyz.de>")
    [first] = await pending(crm)
    await send(smtp, sender=BOB, to="alice@xyz.de", subject="AW: Rückfrage",
               message_id="<answer@acme.com>", headers=reply_to("<question@xyz.de>"))
    waiting = [p for p in await pending(crm) if p["message_id"] == "answer@acme.com"]
    assert waiting[0]["reasons"] == ["thread_waiting"]
    assert waiting[0]["candidates"]["leads"] == first["candidates"]["leads"] == [11111]

    await decide(crm, "confirm", first["id"], by="anna", lead=11111)
    report = await decide(crm, "rematch")  # the waiting reply follows the confirmation
    assert report.filed == 1
    await send(smtp, sender=BOB, to="alice@xyz.de", subject="AW: Rückfrage",
               message_id="<later@acme.com>", headers=reply_to("<question@xyz.de>"))
    assert sorted((e["message_id"], e["lead"]) for e in await history(crm)) == [
        ("answer@acme.com", 11111), ("later@acme.com", 11111), ("question@xyz.de", 11111)]
    assert await pending(crm) == []


async def test_a_reply_from_another_companys_contact_goes_to_the_queue(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    await send(smtp, subject="Lead 11111", message_id="<offer@xyz.de>")
    await send(smtp, sender=HANK, to="alice@xyz.de", subject="Re: Lead",
               message_id="<hank@globex.example>", headers=reply_to("<offer@xyz.de>"))
    [item] = await pending(crm)
    assert item["reasons"] == ["thread_conflict"]
    assert item["candidates"]["leads"] == [11111]
    assert item["candidates"]["contacts"] == [HANK]


async def test_another_tenants_mail_is_never_followed(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    await send(smtp, subject="Lead 11111", message_id="<theirs@other.example>",
               sender="someone@other.example", recipients=["crm@crm.other.example"])
    assert len(await history(crm, "other")) == 1
    await send(smtp, subject="Re: Frage", message_id="<ours@xyz.de>",
               headers=reply_to("<theirs@other.example>"))
    [item] = await pending(crm)
    assert item["reasons"] == ["no_number"]


async def test_a_leads_whole_name_in_the_subject_files_the_mail(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    await send(smtp, sender=BOB, to="alice@xyz.de", subject="AW: [EXT] WEBSITE-RELAUNCH Termin")
    [entry] = await history(crm)
    assert (entry["lead"], entry["contact"]) == (11111, "bob@acme.com")


@pytest.mark.parametrize("subject, reasons, leads", [
    ("Globex-Deal", ["other_companys_name"], [11112]),
    ("Wartung und Website-Relaunch", ["several_names"], [11113, 11111]),
    ("Wartungsvertragsende", ["no_number"], []),          # never inside a longer word
    ("Website Relaunch", ["no_number"], []),              # the hyphen is part of the name
])
async def test_names_that_do_not_decide_queue_the_mail(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient, subject: str,
        reasons: list[str], leads: list[int]) -> None:
    document = directory()
    document["tenants"][0]["contacts"].append({"email": HANK, "company": "globex"})
    document["tenants"][0]["leads"].append({"number": 11113, "name": "Wartung",
                                            "company": "acme"})
    await load_directory(crm, document)
    await send(smtp, sender=BOB, to="alice@xyz.de", subject=subject)
    [item] = await pending(crm)
    assert item["reasons"] == reasons
    assert sorted(item["candidates"]["leads"]) == sorted(leads)


async def test_mail_to_several_contacts_files_one_entry_with_every_participant(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    await send(smtp, subject="Lead 11111", to="Bob <bob@acme.com>, carol@acme.com",
               cc=HANK)
    [entry] = await history(crm)
    assert (entry["contact"], entry["company"]) == ("bob@acme.com", "acme")
    assert entry["participants"] == ["bob@acme.com", "carol@acme.com", HANK]


async def test_contacts_of_different_companies_without_a_deciding_lead_go_to_the_queue(
        crm: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    await send(smtp, subject="Gemeinsamer Termin", to=f"{HANK}, bob@acme.com")
    [item] = await pending(crm)
    assert item["reasons"] == ["no_number"]
    assert item["candidates"]["contacts"] == [HANK, "bob@acme.com"]
    assert item["candidates"]["companies"] == ["globex", "acme"]
    assert await history(crm) == []
