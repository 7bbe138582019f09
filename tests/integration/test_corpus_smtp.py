"""The shared real-world corpus over SMTP: every message gets a clear answer and is kept.

The tenant's sender domains are made to include every corpus From domain, so each
message is authorized and must be filed or queued: 250, never a 4xx/5xx or a crash.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer.db.models import InboundMessage
from crm_mailer.mail.addresses import address_domain, strict_domain
from crm_mailer.mail.parse import parse_message
from tests import factories
from tests.conftest import SmtpClient, load_directory
from tests.corpus_files import CORPUS, as_relayed, corpus_files

FILES = corpus_files()
pytestmark = [pytest.mark.needs_corpus,
              pytest.mark.skipif(not FILES, reason=f"no corpus at {CORPUS}")]


def _valid(domain: str) -> bool:
    try:
        return strict_domain(domain) == domain
    except ValueError:
        return False


def relayed_corpus() -> tuple[list[bytes], set[str]]:
    """The corpus as relayed, and every valid From domain in it (made sender domains)."""
    messages = [as_relayed(p.read_bytes()) for p in FILES]
    domains = {address_domain(p.from_address) for p in map(parse_message, messages)
               if p.from_address}
    return messages, {"xyz.de", *filter(_valid, domains)}


async def test_every_corpus_message_is_accepted_and_stored(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    messages, registered = relayed_corpus()
    # 'header': messages without a usable From fall back to the envelope sender.
    # Every corpus sender is one of the tenant's own people, free-mail domains too: this
    # sweep is about reading the mail, not about which domains may identify a company.
    await load_directory(sessions, factories.directory(sender_domains=sorted(registered),
                                                       sender_policy="header"),
                         free_mail=frozenset())

    unexpected: list[str] = []
    refused = ambiguous_refused = 0
    for path, raw in zip(FILES, messages, strict=True):
        parsed = parse_message(raw)
        from_address = parsed.from_address
        usable = from_address and from_address.isascii() and _valid(address_domain(from_address))
        sender = from_address if usable else "alice@xyz.de"
        reply = await smtp.send(raw, sender=sender)
        # Two From fields, or two addresses in one: no single author, refused by name.
        if parsed.from_fields > 1 or len(parsed.from_addresses) > 1:
            if (reply.code, reply.text[:5]) != (550, "5.7.1") or "ambiguous" not in reply.text:
                unexpected.append(f"{path.relative_to(CORPUS)}: {reply} (ambiguous From)")
            ambiguous_refused += 1
            continue
        # Only a From domain that is no valid domain name (so not registrable) may be refused.
        refusable = from_address is not None and address_domain(from_address) not in registered
        if reply.code != 250 and not (reply.code == 550 and refusable):
            unexpected.append(f"{path.relative_to(CORPUS)}: {reply}")
        refused += reply.code == 550
    assert unexpected == []
    assert refused <= 3, refused
    refused += ambiguous_refused

    async with sessions() as session:
        stored = await session.scalar(select(func.count()).select_from(InboundMessage))
    # Messages sharing a Message-ID (the corpus has copies) are kept once.
    distinct = {parse_message(raw).message_id for raw in messages}
    assert stored is not None and len(distinct) - refused <= stored <= len(distinct)
    assert (await smtp.send(factories.mail())).code == 250


async def test_under_the_default_policy_every_corpus_message_gets_250_or_a_named_refusal(
        sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    messages, registered = relayed_corpus()
    await load_directory(sessions, factories.directory(sender_domains=sorted(registered)),
                         free_mail=frozenset())
    unexpected: list[str] = []
    for path, raw in zip(FILES, messages, strict=True):
        from_address = parse_message(raw).from_address
        usable = from_address and from_address.isascii() and _valid(address_domain(from_address))
        reply = await smtp.send(raw, sender=from_address if usable else "alice@xyz.de")
        if usable and reply.code != 250 and "ambiguous" not in reply.text:
            unexpected.append(f"{path.relative_to(CORPUS)}: {reply} (aligned envelope)")
        elif reply.code != 250 and (reply.code, reply.text[:5]) != (550, "5.7.1"):
            unexpected.append(f"{path.relative_to(CORPUS)}: {reply}")
    assert unexpected == []
