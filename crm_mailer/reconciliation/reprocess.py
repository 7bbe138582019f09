"""Reprocessing: run mail kept as unprocessable through the pipeline again, after a fix."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_mailer.db import repositories
from crm_mailer.db.models import (
    InboundMessage,
    PendingMatch,
    PendingState,
    Tenant,
    fits,
    utcnow,
)
from crm_mailer.errors import MessageRefused
from crm_mailer.ingest import IngestConfig, describe_error, match_for_tenant
from crm_mailer.leads.scope import TenantScope
from crm_mailer.matching import pipeline
from crm_mailer.matching.decide import Filed, Ignored, Queued, Reason
from crm_mailer.matching.facts import MatchInput
from crm_mailer.reconciliation.queue import file_waiting

log = structlog.get_logger("crm_mailer.reprocess")

REPROCESS_BY = "crm-mailer (reprocess)"


async def reprocess(session: AsyncSession, tenant: TenantScope, config: IngestConfig,
                    pending_ids: Sequence[int] = ()) -> Counter[str]:
    """Match the tenant's waiting unprocessable mail again; counts by new outcome.

    Filed mail leaves the queue (confirmed by crm-mailer), uncertain mail waits with its
    real reasons, mail now refused (a limit, an unproven sender) is rejected with the
    reason, machine mail is ignored as it would have been at once (its item rejected by
    crm-mailer, saying why), and mail that still fails stays unprocessable with the new
    error.
    """
    row = await session.get_one(Tenant, tenant.id)
    ref = repositories.TenantRef(row.id, row.slug, row.review, row.sender_policy)
    query = (select(PendingMatch)
             .where(PendingMatch.tenant_id == tenant.id,
                    PendingMatch.state == PendingState.WAITING)
             .order_by(PendingMatch.id).with_for_update(of=PendingMatch)
             .execution_options(populate_existing=True))
    if pending_ids:
        # IDs no item can have are not asked for; naming only such IDs is not "all".
        query = query.where(PendingMatch.id.in_(
            [i for i in pending_ids if fits(PendingMatch.id, i)] or [0]))
    report: Counter[str] = Counter()
    for pending in (await session.scalars(query)).all():
        if Reason.UNPROCESSABLE.value not in pending.reasons:
            report["skipped (not unprocessable)"] += 1
            continue
        async with session.begin_nested():
            report[await _again(session, ref, pending, config)] += 1
    return report


async def _again(session: AsyncSession, tenant: repositories.TenantRef, pending: PendingMatch,
                 config: IngestConfig) -> str:
    message = pending.message
    raw = await repositories.raw_message(session, message)
    try:
        match, result = await match_for_tenant(session, tenant, raw, message.envelope_sender,
                                               config)
    except MessageRefused as refused:
        return _reject(pending, str(refused))
    except Exception as exc:
        message.error = describe_error(exc)
        log.exception("reprocess.failed", tenant=tenant.slug, pending=pending.id)
        return "still unprocessable"
    decision = result.decision
    if isinstance(decision, pipeline.Refused):
        return _reject(pending, decision.why or "sender not authorized")
    _update(message, match, result)
    if isinstance(decision, Ignored):
        message.ignored = decision.reason
        _reject(pending, f"machine mail ({decision.reason.value}): "
                         f"{decision.header}: {decision.value}")
        return "ignored"
    if isinstance(decision, Filed):
        await file_waiting(session, pending, decision, tenant, by=REPROCESS_BY)
        return "filed"
    assert isinstance(decision, Queued)
    pending.reasons = [r.value for r in decision.reasons]
    pending.candidates = decision.candidates
    return "queued"


def _reject(pending: PendingMatch, why: str) -> str:
    pending.state = PendingState.REJECTED
    pending.resolved_by, pending.resolved_at = REPROCESS_BY, utcnow()
    pending.note = why
    return "refused"


def _update(message: InboundMessage, match: MatchInput, result: pipeline.MatchResult) -> None:
    """What the message says, now that it could be read."""
    parsed = match.message
    message.direction = result.findings.direction
    message.sender = repositories.fit(match.sender or "", 320)
    message.recipients_to, message.recipients_cc = list(parsed.to), list(parsed.cc)
    message.subject = parsed.subject
    message.sent_at = parsed.sent_at or message.received_at
    message.body = parsed.body
    message.attachments = [asdict(a) for a in parsed.attachments]
    message.thread_references = list(parsed.references)
    message.forwarded = parsed.forwarded.as_json() if parsed.forwarded else None
    message.evidence = [e.as_dict() for e in result.evidence]
    message.error = None
