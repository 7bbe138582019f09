"""Ingestion: one received message -> parsed, matched per tenant, stored in one transaction."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer.db import repositories
from crm_mailer.db.engine import reading, writing
from crm_mailer.db.failures import DATABASE_ERRORS, changed_meanwhile, unavailable
from crm_mailer.db.models import ReviewPolicy, utcnow
from crm_mailer.errors import (
    CrmMailerError,
    MessageRefused,
    SenderNotAuthorized,
    SenderNotProven,
    StorageUnavailable,
)
from crm_mailer.mail.addresses import address_domain, normalize_address
from crm_mailer.mail.header_block import HeaderBlock, unfold
from crm_mailer.mail.machine import MachineMail, machine_mail
from crm_mailer.mail.parse import (
    DEFAULT_LIMITS,
    Limits,
    ParsedMessage,
    decode_bytes,
    header_block,
    message_key,
    parse_message,
    sender_claim,
)
from crm_mailer.mail.proof import DnsTxt, Proof, SenderPolicy, Verdict, prove, system_dns, verdict
from crm_mailer.matching import pipeline, sender
from crm_mailer.matching.decide import Filed, Ignored, Queued, Reason, candidates
from crm_mailer.matching.facts import MatchInput
from crm_mailer.matching.number import subject_numbers
from crm_mailer.matching.pipeline import Findings
from crm_mailer.matching.tenant import recipient_host
from crm_mailer.settings import Settings

log = structlog.get_logger("crm_mailer.ingest")

FILED_BY = "crm-mailer"

_MAX_ERROR = 2000
T = TypeVar("T")


class Outcome(StrEnum):
    """What one delivery did for one tenant, as the log line says it."""

    FILED = "filed"
    QUEUED = "queued"
    IGNORED = "ignored"  # machine mail: stored, neither filed nor queued
    DISCARDED = "discarded"  # machine mail from a sender the tenant does not take: not stored
    DUPLICATE = "duplicate"
    REFUSED = "refused"
    UNPROCESSABLE = "unprocessable"


class ProcessingTimeout(CrmMailerError):
    """Reading the message took longer than processing_timeout."""


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """What ingestion needs from the configuration, and the DNS it may ask."""

    local_part: str = "crm"
    limits: Limits = DEFAULT_LIMITS
    processing_timeout: float = 30.0
    trusted_authserv_ids: frozenset[str] = frozenset()
    dns_txt: DnsTxt | None = None  # None: no DKIM lookups (tests pass a fake resolver)

    @classmethod
    def from_settings(cls, settings: Settings, dns_txt: DnsTxt | None = None) -> IngestConfig:
        return cls(
            trusted_authserv_ids=frozenset(i.lower() for i in settings.trusted_authserv_ids),
            dns_txt=dns_txt if dns_txt is not None else system_dns(),
            local_part=settings.local_part,
            limits=Limits(max_header_size=settings.max_header_size,
                          max_headers=settings.max_headers,
                          max_addresses_per_header=settings.max_addresses_per_header,
                          max_mime_depth=settings.max_mime_depth,
                          max_mime_parts=settings.max_mime_parts),
            processing_timeout=settings.processing_timeout)


@dataclass(frozen=True, slots=True)
class TenantOutcome:
    """What happened to the message for one tenant."""

    tenant: str
    outcome: Outcome
    reasons: tuple[str, ...] = ()
    record: str | None = None


@dataclass(frozen=True, slots=True)
class SenderCheck:
    """The edge's verdict on the From for the addressed tenants, before the message is parsed."""

    verdicts: dict[SenderPolicy, Verdict]
    tenants: tuple[str, ...] = ()  # the addressed tenants' slugs
    refusal: MessageRefused | None = None  # why no addressed tenant takes mail from this sender


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
    except DATABASE_ERRORS as exc:
        if not unavailable(exc):
            raise
        raise StorageUnavailable(f"cannot look up recipient host: {type(exc).__name__}") from exc


async def directory_is_empty(sessions: async_sessionmaker[AsyncSession]) -> bool:
    """True while no tenant is registered at all (nothing imported yet, or a wrong database)."""
    try:
        async with reading(sessions) as session:
            return not await repositories.any_tenant(session)
    except DATABASE_ERRORS as exc:
        if not unavailable(exc):
            raise
        raise StorageUnavailable(f"cannot read the directory: {type(exc).__name__}") from exc


# Threads of their own for reading messages: the loop's default executor is shared (name
# lookups, anything else using to_thread), and reading must never wait behind it. No more
# messages than max_concurrent_messages are read at once, so threads are started as
# needed up to that many and a message does not queue for one (its wait would count
# against processing_timeout).
_READERS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="crm-mailer-reader")


def _in_reader_thread(function: Callable[[], T]) -> asyncio.Future[T]:
    return asyncio.get_running_loop().run_in_executor(_READERS, function)


async def _off_loop(function: Callable[[], T], budget: float) -> T:
    """Run CPU work in a thread with a time budget: the event loop only ever does I/O.

    Even a small message can cost tens of milliseconds (200 RFC 2231 parameters in 4 KB
    took 50 ms), so size is no guide. The budget bounds the wait, not the thread: the
    input limits keep the work itself linear.
    """
    try:
        return await asyncio.wait_for(_in_reader_thread(function), budget)
    except TimeoutError:
        raise ProcessingTimeout(f"reading the message took longer than {budget:g} s "
                                "(processing_timeout)") from None


async def ingest(sessions: async_sessionmaker[AsyncSession], *, raw: bytes,
                 envelope_sender: str | None, recipients: Sequence[str],
                 config: IngestConfig = IngestConfig(),
                 known_tenants: Mapping[str, repositories.TenantRef] | None = None,
                 ) -> IngestResult:
    """Read, match and store one message for every tenant it was addressed to.

    `known_tenants`: the tenant of each recipient as RCPT found it moments ago, which
    spares the sender check a lookup; the store looks the tenants up again, in its own
    transaction.

    Returns only after the transaction committed. Raises StorageUnavailable when the
    database failed (nothing stored; retry) and MessageRefused for input past a limit or
    from a sender no addressed tenant takes (nothing stored; do not retry). Machine mail
    from such a sender is not refused but discarded: nothing is stored, and the reply is
    250 all the same, so that no bounce goes back to a machine. Any other failure keeps the
    raw message as unprocessable for its tenants, so that no relay retries forever and
    nothing is lost.
    """
    started = time.perf_counter()
    limits = config.limits
    block = None
    try:
        head = await _off_loop(lambda: _head(raw, limits, envelope_sender),
                               config.processing_timeout)
        block = head.block
        sender = normalize_address(envelope_sender or "") or None
        checked = await _sender_check(sessions, raw, block, head.claim, sender, recipients,
                                      config, known_tenants or {})
        if checked.refusal is not None:
            if head.machine is None:
                raise checked.refusal
            return await _discard(head, raw, checked, started)
        message = await _off_loop(
            lambda: parse_message(raw, limits, block, envelope_sender=envelope_sender or ""),
            config.processing_timeout)
        match = MatchInput(message, sender, subject_numbers(message.subject), checked.verdicts)
        return await _store(sessions, match, raw, recipients, config, started)
    except (MessageRefused, StorageUnavailable):
        raise
    except Exception as exc:
        if unavailable(exc):
            log.warning("storage_unavailable", error=type(exc).__name__,
                        duration_ms=_ms(started))
            raise StorageUnavailable(f"reading the directory failed: "
                                     f"{type(exc).__name__}") from exc
        # A failure a retry cannot fix, the database's refusals included: keep the mail.
        log.exception("message.unprocessable", size=len(raw), error=type(exc).__name__)
        message_id, derived = message_key(block, raw)
        return await keep_unprocessable(
            sessions, raw=raw, message_id=message_id, derived=derived,
            envelope_sender=envelope_sender, recipients=recipients,
            local_part=config.local_part, error=describe_error(exc), started=started)


@dataclass(frozen=True, slots=True)
class _Head:
    """What the header block says before anything is looked up."""

    block: HeaderBlock
    claim: str | None  # the one From address
    machine: MachineMail | None  # set when a machine wrote the message


def _head(raw: bytes, limits: Limits, envelope_sender: str | None) -> _Head:
    """The header block, the From it claims and whether a machine wrote the message: one
    trip to a reader thread for all three.

    The null envelope sender (MAIL FROM:<>) is kept for what machines send (RFC 5321
    4.5.5), so it always reads as machine mail: a delivery report, unless the headers say
    more precisely what wrote it.
    """
    block = header_block(raw, limits, smtp=True)
    claim = sender_claim(block, limits)  # refuses two From addresses: then none is read
    machine = machine_mail(block, from_addresses=(claim,) if claim else (),
                           envelope_sender=envelope_sender or "")
    return _Head(block, claim, machine)


async def proof_verdicts(raw: bytes, block: HeaderBlock, claim: str | None,
                         envelope_sender: str | None, policies: Iterable[SenderPolicy],
                         config: IngestConfig) -> dict[SenderPolicy, Verdict]:
    """Whether the From is proven, for each policy asked; DKIM runs in a thread."""
    auth_results = [decode_bytes(unfold(v)) for v in block.values("authentication-results")]
    from_domain = address_domain(claim) if claim else ""
    verdicts: dict[SenderPolicy, Verdict] = {}
    for policy in sorted(set(policies)):
        def gather(policy: SenderPolicy = policy) -> Proof:
            return prove(raw, from_domain=from_domain, envelope_sender=envelope_sender,
                         auth_results=auth_results, trusted_ids=config.trusted_authserv_ids,
                         dns_txt=config.dns_txt, policy=policy)
        # A thread: DKIM hashes the whole message and asks DNS; Authentication-Results
        # parsing is quadratic in its (bounded) length.
        verdicts[policy] = verdict(policy, await _in_reader_thread(gather))
    return verdicts


async def match_for_tenant(session: AsyncSession, tenant: repositories.TenantRef, raw: bytes,
                           envelope_sender: str | None,
                           config: IngestConfig) -> tuple[MatchInput, pipeline.MatchResult]:
    """Read, prove and match one message for one tenant in the caller's session: the same
    reading, proof, facts and steps as ingest, in one go (reprocess, explain). SMTP splits
    this work across reader threads, a read session and the storing transaction.
    An envelope sender of None is not known: the From stands in, as a relay sends it ("" is
    the null sender). Raises MessageRefused for input past a limit."""
    block = header_block(raw, config.limits, smtp=True)
    claim = sender_claim(block, config.limits)
    if envelope_sender is None:
        envelope_sender = claim or ""
    envelope = normalize_address(envelope_sender) or None
    verdicts = await proof_verdicts(raw, block, claim, envelope, [tenant.sender_policy], config)
    parsed = parse_message(raw, config.limits, block, envelope_sender=envelope_sender or "")
    match = MatchInput(parsed, envelope, subject_numbers(parsed.subject), verdicts)
    return match, pipeline.run(match, await repositories.load_facts(session, tenant, match))


async def _sender_check(sessions: async_sessionmaker[AsyncSession], raw: bytes,
                        block: HeaderBlock, claim: str | None, envelope_sender: str | None,
                        recipients: Sequence[str], config: IngestConfig,
                        known: Mapping[str, repositories.TenantRef]) -> SenderCheck:
    """Tell an unknown or unproven sender before the message is parsed (the heavy part).

    The sender step runs again, authoritatively, in the transaction that stores.
    """
    hosts = hosts_of(recipients, config.local_part)
    claimed = ParsedMessage(message_id="", message_id_derived=False, subject="",
                            from_address=claim, to=(), cc=(), sent_at=None, body="")
    lite = MatchInput(claimed, envelope_sender, ())
    async with reading(sessions) as session:
        if hosts and all(recipient in known for recipient in hosts):
            tenants = list(dict.fromkeys(known[recipient] for recipient in hosts))
        else:
            tenants = list(dict.fromkeys(
                (await repositories.tenants_for_hosts(session, hosts.values())).values()))
        facts = [await repositories.load_facts(session, tenant, lite) for tenant in tenants]
    verdicts = await proof_verdicts(raw, block, claim, envelope_sender,
                                    (t.sender_policy for t in tenants), config)
    lite = replace(lite, verdicts=verdicts)
    slugs = tuple(t.slug for t in tenants)
    unproven: list[str] = []
    for tenant_facts in facts:
        result = sender.check(lite, tenant_facts, Findings())
        if result.direction is not None:
            return SenderCheck(verdicts, slugs)
        detail = result.evidence[-1].detail
        if detail.get("unproven"):  # a known sender, but not proven as the policy asks
            unproven.append(str(detail.get("why", "")))
    if not tenants:  # no tenant left (removed since RCPT): the store step says so
        return SenderCheck(verdicts)
    refusal = SenderNotProven(unproven[0]) if unproven else \
        SenderNotAuthorized("Sender is not authorized to file mail for this CRM")
    return SenderCheck(verdicts, slugs, refusal)


async def _discard(head: _Head, raw: bytes, checked: SenderCheck,
                   started: float) -> IngestResult:
    """Machine mail that no addressed tenant takes from this sender: nothing of an unknown
    party's robot mail is stored. The log line says what wrote it and why it was not kept."""
    machine = head.machine
    assert machine is not None
    message_id, _ = await _in_reader_thread(lambda: message_key(head.block, raw))
    outcomes = tuple(TenantOutcome(slug, Outcome.DISCARDED, (machine.reason.value,))
                     for slug in checked.tenants)
    for outcome in outcomes:
        log.info("message", tenant=outcome.tenant, message_id=message_id,
                 outcome=outcome.outcome.value, reasons=list(outcome.reasons),
                 evidence=f"{machine.header}: {machine.value}", refused=str(checked.refusal),
                 size=len(raw), duration_ms=_ms(started))
    return IngestResult(message_id, outcomes)


def describe_error(exc: BaseException) -> str:
    """An exception as one bounded line for the stored message and the queue."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_ERROR else text[:_MAX_ERROR - 1] + "…"


async def _store(sessions: async_sessionmaker[AsyncSession], match: MatchInput, raw: bytes,
                 recipients: Sequence[str], config: IngestConfig,
                 started: float) -> IngestResult:
    message = match.message
    received_at = utcnow()
    for attempt in (1, 2):
        try:
            results = await _store_once(sessions, match, raw, recipients, config, received_at)
            break
        except DATABASE_ERRORS as exc:
            if attempt == 1 and changed_meanwhile(exc):
                # A lead it was matched to was deleted meanwhile: match it again, as if it
                # had come a moment later. Once: a second time is no race but a fault.
                log.info("message.matched_again", message_id=message.message_id,
                         error=describe_error(exc))
                continue
            if not unavailable(exc):
                raise  # ingest keeps the message as unprocessable
            log.warning("storage_unavailable", message_id=message.message_id,
                        error=type(exc).__name__, duration_ms=_ms(started))
            raise StorageUnavailable(
                f"storing the message failed: {type(exc).__name__}") from exc
    for outcome in results:
        log.info("message", tenant=outcome.tenant, message_id=message.message_id,
                 outcome=outcome.outcome.value, reasons=list(outcome.reasons),
                 record=outcome.record, size=len(raw), duration_ms=_ms(started))
    return IngestResult(message.message_id, tuple(results))


async def _store_once(sessions: async_sessionmaker[AsyncSession], match: MatchInput,
                      raw: bytes, recipients: Sequence[str], config: IngestConfig,
                      received_at: dt.datetime) -> list[TenantOutcome]:
    """One transaction: each addressed tenant's copy matched and stored."""
    results: list[TenantOutcome] = []
    async with writing(sessions) as session:
        hosts = hosts_of(recipients, config.local_part)
        tenants = await repositories.tenants_for_hosts(session, hosts.values())
        for tenant in dict.fromkeys(tenants.values()):
            # Each tenant's copy names only its own crm addresses: that the mail also
            # went to another tenant's CRM is that tenant's business.
            own = [r for r, host in hosts.items() if tenants.get(host) == tenant]
            results.append(await _ingest_for_tenant(session, tenant, match, raw, own,
                                                    received_at))
    return results


async def keep_unprocessable(sessions: async_sessionmaker[AsyncSession], *, raw: bytes,
                             message_id: str, derived: bool, envelope_sender: str | None,
                             recipients: Sequence[str], local_part: str, error: str,
                             started: float) -> IngestResult:
    """Store the raw message for each addressed tenant, queued with reason `unprocessable`.

    Only what cannot fail is read from the message here: its ID and its bytes.
    """
    received_at = utcnow()
    results: list[TenantOutcome] = []
    try:
        async with writing(sessions) as session:
            hosts = hosts_of(recipients, local_part)
            tenants = await repositories.tenants_for_hosts(session, hosts.values())
            for tenant in dict.fromkeys(tenants.values()):
                own = [r for r, host in hosts.items() if tenants.get(host) == tenant]
                row_id = await repositories.insert_message_once(session, {
                    "tenant_id": tenant.id, "message_id": message_id,
                    "message_id_derived": derived, "received_at": received_at,
                    "envelope_sender": envelope_sender or "", "envelope_recipients": own,
                    "direction": None, "sender": "", "recipients_to": [], "recipients_cc": [],
                    "subject": "", "sent_at": received_at, "body": "", "attachments": [],
                    "evidence": [], "raw": raw, "error": error})
                if row_id is None:
                    results.append(TenantOutcome(tenant.slug, Outcome.DUPLICATE))
                    continue
                await repositories.add_pending_match(
                    session, tenant=tenant, message_id=row_id,
                    reasons=[Reason.UNPROCESSABLE.value], candidates={})
                results.append(TenantOutcome(tenant.slug, Outcome.UNPROCESSABLE,
                                             (Reason.UNPROCESSABLE.value,)))
    except DATABASE_ERRORS as exc:
        if not unavailable(exc):
            raise
        raise StorageUnavailable(f"storing the message failed: {type(exc).__name__}") from exc
    for outcome in results:
        log.warning("message", tenant=outcome.tenant, message_id=message_id,
                    outcome=outcome.outcome.value, error=error, size=len(raw),
                    duration_ms=_ms(started))
    return IngestResult(message_id, tuple(results))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def _ingest_for_tenant(session: AsyncSession, tenant: repositories.TenantRef,
                             match: MatchInput, raw: bytes, recipients: Sequence[str],
                             received_at: dt.datetime) -> TenantOutcome:
    facts = await repositories.load_facts(session, tenant, match)
    result = pipeline.run(match, facts)
    decision = result.decision
    if isinstance(decision, pipeline.Refused):
        if (machine := match.message.machine) is not None:  # as at the edge: not stored
            return TenantOutcome(tenant.slug, Outcome.DISCARDED, (machine.reason.value,))
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
        "thread_references": list(message.references),
        "forwarded": message.forwarded.as_json() if message.forwarded else None,
        "raw": raw,
        "ignored": decision.reason if isinstance(decision, Ignored) else None,
    })
    if message_row_id is None:
        return TenantOutcome(tenant.slug, Outcome.DUPLICATE)
    if isinstance(decision, Ignored):  # machine mail: kept as received, nothing more
        return TenantOutcome(tenant.slug, Outcome.IGNORED, (decision.reason.value,))
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
