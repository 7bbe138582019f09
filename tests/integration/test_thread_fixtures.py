"""Issue 9, rule 2 over SMTP on SQLite and PostgreSQL, with replies as real clients write them
(fixtures/eml/conversation/thread, see its README): each follows its filed parent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer.db.models import InboundMessage
from crm_mailer.mail.parse import parse_message
from tests import factories
from tests.conftest import SmtpClient, load_directory
from tests.integration.test_smtp_ingest import history

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "eml"
THREADS = FIXTURES / "conversation" / "thread"

# The conversation the replies belong to, as Alice sent it: filed by the subject number,
# the Globex one by the lead's name (11113 is a lead and a project there).
PARENTS = (("<3f2a9c1e-7b4d-4e8a-9c21-5d6f7e8a9b0c@xyz.de>", "Termin Donnerstag Lead 11111",
            "bob@acme.com"),
           ("<5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f@xyz.de>", "Angebot Lead 11111",
            "bob@acme.com"),
           ("<7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d@xyz.de>", "UK expansion - next steps",
            "hank@globex.co.uk"))
# reply -> (lead, contact, the parent its thread step names)
REPLIES = {
    "apple_mail_reply_all": (11111, "bob@acme.com", "3f2a9c1e"),
    "broken_references_folding": (11111, "bob@acme.com", "5c1d2e3f"),
    "outlook_reply_thread_index": (11113, "hank@globex.co.uk", "7a8b9c0d"),
    "references_without_brackets": (11113, "hank@globex.co.uk", "7a8b9c0d"),
    "thunderbird_reply": (11111, "carol@acme.com", "5c1d2e3f"),
}


def test_every_thread_fixture_has_an_expectation() -> None:
    assert sorted(p.stem for p in THREADS.glob("*.eml")) == sorted(REPLIES)


@pytest.mark.parametrize("name", sorted(REPLIES))
async def test_a_clients_reply_follows_its_filed_parent(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient, name: str) -> None:
    await load_directory(sessions, json.loads((FIXTURES / "directory.json").read_text()))
    for message_id, subject, to in PARENTS:
        mail = factories.mail(subject=subject, to=to, message_id=message_id)
        assert (await smtp.send(mail, sender="alice@xyz.de")).code == 250
    raw = (THREADS / f"{name}.eml").read_bytes()
    parsed = parse_message(raw)
    assert (await smtp.send(raw, sender=parsed.from_address)).code == 250
    [entry] = [e for e in await history(sessions) if e["message_id"] == parsed.message_id]
    lead, contact, parent = REPLIES[name]
    assert (entry["lead"], entry["contact"]) == (lead, contact)
    async with sessions() as session:
        evidence = await session.scalar(select(InboundMessage.evidence).where(
            InboundMessage.message_id == parsed.message_id))
    [thread] = [step for step in evidence if step["step"] == "thread"]
    assert thread["found"] == f"lead {lead}" and thread["message_id"].startswith(parent)
