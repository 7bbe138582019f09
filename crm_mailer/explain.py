"""Explain: run one message through the whole pipeline for one tenant and store nothing.

For support staff who ask "why did this mail land there?": the same reading, sender proof,
directory facts and steps as a message received over SMTP, each step's finding and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from crm_mailer.db import repositories
from crm_mailer.errors import MessageRefused, NotFound
from crm_mailer.ingest import IngestConfig, match_for_tenant
from crm_mailer.matching import pipeline
from crm_mailer.matching.decide import Filed, Ignored, Queued


@dataclass(frozen=True, slots=True)
class Explanation:
    """What would happen to the message, and the evidence of every step."""

    tenant: str
    outcome: str  # filed, queued, ignored, discarded, refused
    summary: str
    evidence: tuple[dict[str, Any], ...]

    def as_json(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "outcome": self.outcome, "summary": self.summary,
                "evidence": list(self.evidence)}


async def explain(session: AsyncSession, slug: str, raw: bytes, config: IngestConfig, *,
                  envelope_sender: str | None = None) -> Explanation:
    """Match `raw` for tenant `slug` as SMTP would (the envelope sender defaults to the
    From, as a relay sends it); nothing is written."""
    row = await repositories.tenant_by_slug(session, slug)
    if row is None:
        raise NotFound(f"no tenant '{slug}'")
    tenant = repositories.TenantRef(row.id, row.slug, row.review, row.sender_policy)
    try:
        match, result = await match_for_tenant(session, tenant, raw, envelope_sender, config)
    except MessageRefused as refused:
        return Explanation(slug, "refused", f"{type(refused).__name__}: {refused}", ())
    parsed = match.message
    evidence = tuple(e.as_dict() for e in result.evidence)
    decision = result.decision
    if isinstance(decision, pipeline.Refused):
        why = decision.why or "sender not authorized"
        if (machine := parsed.machine) is not None:  # SMTP answers 250 and stores nothing
            return Explanation(slug, "discarded", f"machine mail ({machine.reason.value}) "
                               f"from a sender the tenant does not take: {why}", evidence)
        return Explanation(slug, "refused", why, evidence)
    if isinstance(decision, Ignored):
        return Explanation(slug, "ignored", f"machine mail ({decision.reason.value}, "
                           f"{decision.header}: {decision.value}): kept, neither filed nor "
                           "queued", evidence)
    if isinstance(decision, Filed):
        record = decision.record
        return Explanation(slug, "filed", f"filed on {record.kind} {record.number}, contact "
                           f"{decision.contact.email}", evidence)
    assert isinstance(decision, Queued)
    reasons = ", ".join(r.value for r in decision.reasons)
    return Explanation(slug, "queued", f"queued for a person: {reasons}", evidence)
