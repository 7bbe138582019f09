"""Issue 9, rule 9 over SMTP on SQLite and PostgreSQL: an employee forwards a customer's
mail to crm@ alone; the forwarded original's sender is the contact. The messages are the
clients' own (fixtures/eml/conversation/forward, see its README)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer.mail.parse import parse_message
from tests.conftest import SmtpClient, load_directory
from tests.integration.test_reconciliation import decide
from tests.integration.test_smtp_ingest import history, pending

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "eml"
FORWARDS = FIXTURES / "conversation" / "forward"

# fixture -> filed (lead, contact), or queued (reasons, suggested or named leads)
JUERGEN = "jürgen@xn--mller-shne-kcb9d.example"  # stored in IDNA form
FILED = {
    "outlook365_de": (11111, "bob@acme.com"),            # WG: Angebot Website-Relaunch
    "thunderbird_de": (11111, "bob@acme.com"),
    "thunderbird_rfc822_attachment": (11111, "bob@acme.com"),
    "gmail_de_base64": (11112, JUERGEN),  # ... Wartungsvertrag ...
    "outlook2016_de_plain": (11112, JUERGEN),
    "new_outlook_en_html_only": (11113, "hank@globex.co.uk"),   # Fw: UK expansion - ...
    "outlook2010_en_plain": (11113, "hank@globex.co.uk"),
    "outlook365_de_reply": (11111, "bob@acme.com"),      # a reply to bob, not a forward
    "gmail_de_reply_quoting_forward": (11112, "sabine.schmidt@mueller-gmail.example"),
}
QUEUED = {
    "apple_mail_de_iphone": (["no_number"], [11111]),    # acme's single open lead suggested
    "outlook_de_block_in_html_table": (["no_number"], [11111]),
    "thunderbird52_original_message": (["no_number"], [11111]),
    "apple_mail_en": (["unknown_number"], [11111]),            # "... 16 March"
    "gmail_en": (["unknown_number"], [11112]),                 # "Order: 2 extra licences"
    "thunderbird_en_html_only": (["unknown_number"], [11113]), # "... 3 sites"
    "gmail_two_attached_messages": (["no_number"], [11113]),
    "gmail_en_no_from_line": (["no_number", "no_contact"], []),  # no customer to be seen
    # Tom (a colleague) wrote the original to Alice: no customer side; the name is a candidate.
    "outlook365_de_forward_of_forward": (["no_contact"], [11111]),
}


def test_every_forward_fixture_has_an_expectation() -> None:
    assert sorted(p.stem for p in FORWARDS.glob("*.eml")) == sorted({*FILED, *QUEUED})


@pytest.mark.parametrize("name", sorted({*FILED, *QUEUED}))
async def test_a_forwarded_customer_mail_is_filed_on_its_sender(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient, name: str) -> None:
    await load_directory(sessions, json.loads((FIXTURES / "directory.json").read_text()))
    raw = (FORWARDS / f"{name}.eml").read_bytes()
    sender = parse_message(raw).from_address
    reply = await smtp.send(raw, sender=sender, recipients=["crm@xyz.hq.example"])
    assert reply.code == 250, reply
    if name in FILED:
        [entry] = await history(sessions)
        assert (entry["lead"], entry["contact"]) == FILED[name]
        assert await pending(sessions) == []
    else:
        [item] = await pending(sessions)
        assert (item["reasons"], item["candidates"]["leads"]) == QUEUED[name]
        assert await history(sessions) == []


async def test_rematch_still_reads_the_forwarded_originals_sender(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    """Bob is not a contact yet: the forward waits; once he is imported, rematch files it
    on him, from the stored reading of the original (the body is not parsed again)."""
    document = json.loads((FIXTURES / "directory.json").read_text())
    tenant = document["tenants"][0]
    without_bob = json.loads(json.dumps(document))
    without_bob["tenants"][0]["contacts"] = [c for c in tenant["contacts"]
                                             if c["email"] != "bob@acme.com"]
    for lead in without_bob["tenants"][0]["leads"]:
        if lead.get("contact") == "bob@acme.com":
            del lead["contact"]
    await load_directory(sessions, without_bob)
    raw = (FORWARDS / "outlook365_de.eml").read_bytes()
    assert (await smtp.send(raw, sender="alice@xyz.de")).code == 250
    [item] = await pending(sessions)
    assert item["reasons"] == ["no_contact"] and item["candidates"]["leads"] == [11111]
    await load_directory(sessions, document)
    report = await decide(sessions, "rematch")
    assert report.filed == 1
    [entry] = await history(sessions)
    assert (entry["lead"], entry["contact"]) == (11111, "bob@acme.com")
