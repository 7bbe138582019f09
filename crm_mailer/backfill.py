"""Backfill: existing mail from .eml files, mbox files and Maildir folders, through the same
pipeline as SMTP (ingest.ingest), as if each had come with crm@<host> as its recipient.

A file has no envelope: the From stands in for the envelope sender, as a relay would have
sent it. Line ends are made CRLF, as on the wire. Re-running is safe: a message already
stored for the tenant (its Message-ID, or for one without, the ID derived from its bytes)
is a duplicate, never a second entry.
"""

from __future__ import annotations

import mailbox
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer import ingest
from crm_mailer.db import repositories
from crm_mailer.db.engine import reading
from crm_mailer.db.models import InboundMessage
from crm_mailer.errors import MessageRefused, NotFound
from crm_mailer.ingest import IngestConfig, Outcome
from crm_mailer.mail.parse import header_block, message_key, sender_claim
from crm_mailer.matching import pipeline
from crm_mailer.matching.decide import Filed, Queued

# The summary's rows, in this order; DISCARDED machine mail counts as ignored.
OUTCOMES = ("filed", "queued", "ignored", "refused", "duplicate", "unprocessable")


@dataclass(frozen=True, slots=True)
class Source:
    """One message to backfill: where it is (for the log) and its bytes."""

    where: str
    raw: bytes


def wire_form(raw: bytes) -> bytes:
    """CRLF line ends, as SMTP delivers a message (mbox and Maildir files use LF)."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def is_maildir(path: Path) -> bool:
    return path.is_dir() and all((path / sub).is_dir() for sub in ("cur", "new", "tmp"))


def is_mbox(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(5) == b"From "


def sources(paths: Iterable[Path]) -> Iterator[Source]:
    """Every message under `paths`: Maildir folders, mbox files, .eml files, and the .eml
    files (recursively) of any other folder; in a stable order."""
    for path in paths:
        if is_maildir(path):
            folder = mailbox.Maildir(path, factory=None, create=False)
            for key in sorted(folder.keys()):
                yield Source(f"{path}:{key}", folder.get_bytes(key))
        elif path.is_dir():
            yield from sources(sorted(p for p in path.rglob("*.eml") if p.is_file()))
        elif is_mbox(path):
            box = mailbox.mbox(path, create=False)
            for number, key in enumerate(box.iterkeys(), 1):  # the file's order
                yield Source(f"{path}#{number}", box.get_bytes(key))  # as stored
        else:
            yield Source(str(path), path.read_bytes())


def count(paths: Iterable[Path]) -> int:
    """How many messages `sources` will yield (for the progress bar)."""
    total = 0
    for path in paths:
        if is_maildir(path):
            total += len(mailbox.Maildir(path, factory=None, create=False))
        elif path.is_dir():
            total += sum(1 for p in path.rglob("*.eml") if p.is_file())
        elif is_mbox(path):
            total += len(mailbox.mbox(path, create=False))
        else:
            total += 1
    return total


def _envelope_sender(raw: bytes, config: IngestConfig) -> str:
    """The From stands in for the envelope sender; "" when there is none."""
    try:
        return sender_claim(header_block(raw, config.limits, smtp=True), config.limits) or ""
    except MessageRefused:
        return ""  # ingest refuses it again, with the reason


async def file_one(sessions: async_sessionmaker[AsyncSession], host: str, raw: bytes,
                   config: IngestConfig) -> str:
    """Ingest one message for the tenant of `host`; its outcome (one of OUTCOMES).
    Raises StorageUnavailable when the database fails (nothing of it stored)."""
    raw = wire_form(raw)
    try:
        result = await ingest.ingest(sessions, raw=raw,
                                     envelope_sender=_envelope_sender(raw, config),
                                     recipients=[f"{config.local_part}@{host}"],
                                     config=config)
    except MessageRefused:
        return "refused"
    if not result.outcomes:
        raise NotFound(f"no tenant has the host {host!r}")
    outcome = result.outcomes[0].outcome
    return "ignored" if outcome is Outcome.DISCARDED else outcome.value


async def preview_one(sessions: async_sessionmaker[AsyncSession], host: str, raw: bytes,
                      config: IngestConfig) -> str:
    """What file_one would do, storing nothing (a read-only transaction)."""
    raw = wire_form(raw)
    async with reading(sessions) as session:
        tenant = (await repositories.tenants_for_hosts(session, [host])).get(host)
        if tenant is None:
            raise NotFound(f"no tenant has the host {host!r}")
        try:
            message_id, _ = message_key(header_block(raw, config.limits, smtp=True), raw)
            if await session.scalar(select(InboundMessage.id).where(
                    InboundMessage.tenant_id == tenant.id,
                    InboundMessage.message_id == message_id)) is not None:
                return "duplicate"
            match, result = await ingest.match_for_tenant(session, tenant, raw, None, config)
        except MessageRefused:
            return "refused"
        except Exception:  # what ingest would keep as unprocessable
            return "unprocessable"
    decision = result.decision
    if isinstance(decision, pipeline.Refused):
        return "ignored" if match.message.machine is not None else "refused"
    if isinstance(decision, Filed):
        return "filed"
    return "queued" if isinstance(decision, Queued) else "ignored"


def summary(outcomes: Counter[str]) -> list[tuple[str, int]]:
    return [(name, outcomes[name]) for name in OUTCOMES]
