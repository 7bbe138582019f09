"""The aiosmtpd handler: accept crm@<tenant host> at RCPT, hand DATA to ingestion, reply by name.

Nothing escapes a hook: aiosmtpd would turn an exception into a permanent 500 (and leak
its text), so storage trouble becomes 451 and the relaying server retries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer import ingest, metrics
from crm_mailer.db.repositories import TenantRef
from crm_mailer.errors import (
    MessageMalformed,
    MessageRefused,
    MessageTooLarge,
    SenderNotAuthorized,
    SenderNotProven,
    StorageUnavailable,
)
from crm_mailer.ingest import IngestConfig, Outcome
from crm_mailer.smtp import replies

log = structlog.get_logger("crm_mailer.smtp")

MAX_RECIPIENTS = 100
EMPTY_DIRECTORY_WARNING_EVERY = 60.0  # seconds
_REFUSAL_CODES: tuple[tuple[type[MessageRefused], str], ...] = (
    (MessageTooLarge, "552 5.3.4"),
    (MessageMalformed, "554 5.6.0"),
    (SenderNotProven, "550 5.7.1"),
    (SenderNotAuthorized, "550 5.7.1"),
    (MessageRefused, "554 5.6.0"),
)


class TenantEnvelope(Envelope):
    """An envelope that keeps each accepted recipient's tenant as RCPT found it, so that
    DATA need not look it up again before the store does."""

    def __init__(self) -> None:
        super().__init__()
        self.tenants: dict[str, TenantRef] = {}


class IngestHandler:
    """Connects aiosmtpd's hooks to ingestion."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], local_part: str,
                 config: IngestConfig | None = None,
                 ready: Callable[[], bool] = lambda: True) -> None:
        """`ready`: whether the database is there with the current schema (serve starts
        without it and answers 451 until then, see smtp.readiness)."""
        self.sessions = sessions
        self.ready = ready
        self.local_part = local_part
        self.config = config or IngestConfig(local_part=local_part)
        self._empty_warned_at = -EMPTY_DIRECTORY_WARNING_EVERY
        self.draining = False
        self.in_flight: set[asyncio.Task[Any]] = set()
        self.idle = asyncio.Event()
        self.idle.set()

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        """Never advertise AUTH: relays are admitted by network, and aiosmtpd's built-in
        mechanisms would only ever fail a relay that tried its credentials."""
        session.host_name = hostname
        return [line for line in responses if not line.startswith("250-AUTH")]

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if self.draining:
            return replies.S421_SHUTTING_DOWN
        if address and not _printable(address):  # raw 8-bit or control bytes
            return replies.S501_BAD_SENDER
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return replies.S250_OK

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        reply, tenant = await self._recipient(session, envelope, address)
        metrics.record_reply("RCPT", reply)
        if tenant is not None:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
            if isinstance(envelope, TenantEnvelope):
                envelope.tenants[address] = tenant
        return reply

    async def _recipient(self, session: Session, envelope: Envelope,
                         address: str) -> tuple[str, TenantRef | None]:
        """The reply to RCPT TO:<address>, and its tenant when it is accepted."""
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return replies.S452_TOO_MANY_RECIPIENTS, None
        if not _printable(address):  # raw 8-bit or control bytes: no address of ours
            return replies.S501_BAD_RECIPIENT, None
        if not self.ready():
            log.info("rcpt.deferred", recipient=address, error="database not ready")
            return replies.S451_STORAGE, None
        try:
            tenant = await ingest.tenant_for_recipient(self.sessions, address, self.local_part)
            if tenant is None and await ingest.directory_is_empty(self.sessions):
                self._warn_empty_directory()
                return replies.S451_NO_TENANT_YET, None
        except StorageUnavailable as exc:
            log.warning("rcpt.deferred", recipient=address, error=str(exc))
            metrics.DATABASE_ERRORS.inc()
            return replies.S451_STORAGE, None
        except Exception:
            log.exception("rcpt.failed", recipient=address)
            return replies.S451_INTERNAL, None
        if tenant is None:
            log.info("rcpt.rejected", recipient=address, peer=_peer(session),
                     sender=envelope.mail_from)
            return replies.S550_UNKNOWN_RECIPIENT, None
        return replies.S250_RCPT_OK, tenant

    def _warn_empty_directory(self) -> None:
        """A directory with no tenant is a set-up fault: keep the mail coming back, say so."""
        now = asyncio.get_running_loop().time()
        if now - self._empty_warned_at >= EMPTY_DIRECTORY_WARNING_EVERY:
            self._empty_warned_at = now
            log.warning("directory.empty", hint="no tenant is imported: every recipient "
                        "gets 451 until `crm-mailer import` loads one")

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        task = asyncio.current_task()
        assert task is not None
        self.in_flight.add(task)
        self.idle.clear()
        started = time.perf_counter()
        try:
            reply = await self._deliver(envelope)
            metrics.PROCESSING.observe(time.perf_counter() - started)
            metrics.record_reply("DATA", reply)
            return reply
        finally:
            self.in_flight.discard(task)
            if not self.in_flight:
                self.idle.set()

    async def _deliver(self, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(raw, str):  # only with decode_data=True, which we never set
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            result = await ingest.ingest(
                self.sessions, raw=raw, envelope_sender=envelope.mail_from,
                recipients=envelope.rcpt_tos, config=self.config,
                known_tenants=envelope.tenants if isinstance(envelope, TenantEnvelope) else None)
        except StorageUnavailable:
            metrics.DATABASE_ERRORS.inc()
            return replies.S451_STORAGE
        except MessageRefused as refused:
            metrics.record_outcome("refused")
            log.info("message.refused", sender=envelope.mail_from, size=len(raw),
                     reason=str(refused))
            code = next(code for kind, code in _REFUSAL_CODES if isinstance(refused, kind))
            return replies.refusal(code, str(refused))
        except Exception:
            # Ingestion keeps what it cannot read as unprocessable; reaching this means even
            # that failed. Defer, never bounce: the log carries the traceback.
            log.exception("data.failed", sender=envelope.mail_from, size=len(raw))
            return replies.S451_INTERNAL
        for outcome in result.outcomes:
            metrics.record_outcome(outcome.outcome.value)
        if not result.outcomes:
            return replies.S550_NO_VALID_RECIPIENT
        if not result.accepted:
            return replies.S550_SENDER_NOT_AUTHORIZED
        kept = {o.outcome for o in result.outcomes}
        if Outcome.FILED in kept:
            return replies.S250_FILED
        if Outcome.QUEUED in kept:
            return replies.S250_QUEUED
        if Outcome.UNPROCESSABLE in kept:
            return replies.S250_UNPROCESSABLE
        if kept & {Outcome.IGNORED, Outcome.DISCARDED}:
            return replies.S250_MACHINE_MAIL
        return replies.S250_DUPLICATE


def _printable(address: str) -> bool:
    """False for surrogates (undecodable bytes), control characters and the like."""
    return address.isprintable()


def _peer(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer)
