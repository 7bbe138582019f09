"""Ingestion: one received message -> parsed, matched per tenant, stored in one transaction."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum

import structlog
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer.db import repositories
from crm_mailer.db.engine import reading, writing
from crm_mailer.db.models import ReviewPolicy, utcnow
from crm_mailer.errors import StorageUnavailable
from crm_mailer.mail.addresses import normalize_address
from crm_mailer.mail.parse import ParsedMessage, parse_message
from crm_mailer.matching import pipeline
from crm_mailer.matching.decide import Filed, Queued, Reason, candidates
from crm_mailer.matching.facts import MatchInput
from crm_mailer.matching.number import subject_numbers
from crm_mailer.matching.tenant import recipient_host

log = structlog.get_logger("crm_mailer.ingest")

FILED_BY = "crm-mailer"

# Parsing a large message takes tens of milliseconds: do it off the event loop.
_PARSE_IN_THREAD_BYTES = 256 * 1024

# Driver and pool failures that mean "the database is not there right now", not a bug.
STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError, InterfaceError, PoolTimeoutError, DBAPIError, OSError, TimeoutError,
    ConnectionError,
)


class Outcome(StrEnum):
    FILED = "filed"
    QUEUED = "queued"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class TenantOutcome:
    """What happened to the message for one tenant."""

    tenant: str
    outcome: Outcome
    reasons: tuple[str, ...] = ()
    record: str | None = None


@dataclass(frozen=True, slots=True)
class IngestResult:
    message_id: str
    outcomes: tuple[TenantOutcome, ...]

    @property
    def accepted(self) -> bool:
        """True when at least one tenant keeps the message."""
        return any(o.outcome is not Outcome.REFUSED for o in self.outcomes)


def hosts_of(recipients: Iterable[str], local_part: str) -> dict[str, str]:
    """Each envelope recipient that names a possible tenant host, with that host."""
    found = {r: recipient_host(r, local_part) for r in recipients}
    return {recipient: host for recipient, host in found.items() if host}


async def tenant_for_recipient(sessions: async_sessionmaker[AsyncSession], address: str,
                               local_part: str) -> repositories.TenantRef | None:
    """The tenant `address` delivers to, or None; raises StorageUnavailable."""
    host = recipient_host(address, local_part)
    if host is None:
        return None
    try:
        async with reading(sessions) as session:
            return (await repositories.tenants_for_hosts(session, [host])).get(host)
    except STORAGE_ERRORS as exc:
        raise StorageUnavailable(f"cannot look up recipient host: {type(exc).__name__}") from exc


async def parse(raw: bytes) -> ParsedMessage:
    if len(raw) > _PARSE_IN_THREAD_BYTES:
        return await asyncio.to_thread(parse_message, raw)
    return parse_message(raw)


async def ingest(sessions: async_sessionmaker[AsyncSession], *, raw: bytes,
                 envelope_sender: str | None, recipients: Sequence[str],
                 local_part: str) -> IngestResult:
    """Parse, match and store one message for every tenant it was addressed to.

    Returns only after the transaction committed; raises StorageUnavailable when the
    database failed, in which case nothing was stored and the sender should retry.
    """
    started = time.perf_counter()
    message = await parse(raw)
    match = MatchInput(message, normalize_address(envelope_sender or "") or None,
                       subject_numbers(message.subject))
    received_at = utcnow()
    results: list[TenantOutcome] = []
    try:
        async with writing(sessions) as session:
            hosts = hosts_of(recipients, local_part)
            tenants = await repositories.tenants_for_hosts(session, hosts.values())
            for tenant in dict.fromkeys(tenants.values()):
                # Each tenant's copy names only its own crm addresses: that the mail also
                # went to another tenant's CRM is that tenant's business.
                own = [r for r, host in hosts.items() if tenants.get(host) == tenant]
                results.append(await _ingest_for_tenant(session, tenant, match, raw, own,
                                                        received_at))
    except STORAGE_ERRORS as exc:
        log.warning("storage_unavailable", message_id=message.message_id,
                    error=type(exc).__name__, duration_ms=_ms(started))
        raise StorageUnavailable(f"storing the message failed: {type(exc).__name__}") from exc
    for outcome in results:
        log.info("message", tenant=outcome.tenant, message_id=message.message_id,
                 outcome=outcome.outcome.value, reasons=list(outcome.reasons),
                 record=outcome.record, size=len(raw), duration_ms=_ms(started))
    return IngestResult(message.message_id, tuple(results))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def _ingest_for_tenant(session: AsyncSession, tenant: repositories.TenantRef,
                             match: MatchInput, raw: bytes, recipients: Sequence[str],
                             received_at: dt.datetime) -> TenantOutcome:
    facts = await repositories.load_facts(session, tenant, match)
    result = pipeline.run(match, facts)
    decision = result.decision
    if isinstance(decision, pipeline.Refused):
        return TenantOutcome(tenant.slug, Outcome.REFUSED, ("sender_not_authorized",))
    assert result.findings.direction is not None
    message = match.message
    message_row_id = await repositories.insert_message_once(session, {
        "tenant_id": tenant.id,
        "message_id": message.message_id,
        "message_id_derived": message.message_id_derived,
        "received_at": received_at,
        "envelope_sender": match.envelope_sender or "",
        "envelope_recipients": list(recipients),
        "direction": result.findings.direction,
        "sender": match.sender or "",
        "recipients_to": list(message.to),
        "recipients_cc": list(message.cc),
        "subject": message.subject,
        "sent_at": message.sent_at or received_at,
        "body": message.body,
        "attachments": [asdict(a) for a in message.attachments],
        "evidence": [e.as_dict() for e in result.evidence],
        "raw": raw,
    })
    if message_row_id is None:
        return TenantOutcome(tenant.slug, Outcome.DUPLICATE)
    if isinstance(decision, Filed):
        await repositories.file_decision(session, tenant.id, message_row_id, decision,
                                         filed_by=FILED_BY)
        if tenant.review is ReviewPolicy.ALL:  # filed, and shown for a check all the same
            await repositories.add_pending_match(
                session, tenant=tenant, message_id=message_row_id,
                reasons=[Reason.REVIEW.value],
                candidates=candidates(facts, result.findings))
        return TenantOutcome(tenant.slug, Outcome.FILED,
                             record=f"{decision.record.kind} {decision.record.number}")
    assert isinstance(decision, Queued)
    await repositories.add_pending_match(
        session, tenant=tenant, message_id=message_row_id,
        reasons=[r.value for r in decision.reasons], candidates=decision.candidates)
    return TenantOutcome(tenant.slug, Outcome.QUEUED, tuple(r.value for r in decision.reasons))
