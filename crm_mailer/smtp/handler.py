"""The aiosmtpd handler: accept crm@<tenant host> at RCPT, hand DATA to ingestion, reply by name.

Nothing escapes a hook: aiosmtpd would turn an exception into a permanent 500 (and leak
its text), so storage trouble becomes 451 and the relaying server retries.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer import ingest
from crm_mailer.errors import StorageUnavailable
from crm_mailer.ingest import Outcome
from crm_mailer.smtp import replies

log = structlog.get_logger("crm_mailer.smtp")

MAX_RECIPIENTS = 100


class IngestHandler:
    """Connects aiosmtpd's hooks to ingestion."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], local_part: str) -> None:
        self.sessions = sessions
        self.local_part = local_part
        self.draining = False
        self.in_flight: set[asyncio.Task[Any]] = set()
        self.idle = asyncio.Event()
        self.idle.set()

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if self.draining:
            return replies.S421_SHUTTING_DOWN
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return replies.S250_OK

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return replies.S452_TOO_MANY_RECIPIENTS
        try:
            tenant = await ingest.tenant_for_recipient(self.sessions, address, self.local_part)
        except StorageUnavailable as exc:
            log.warning("rcpt.deferred", recipient=address, error=str(exc))
            return replies.S451_STORAGE
        except Exception:
            log.exception("rcpt.failed", recipient=address)
            return replies.S451_INTERNAL
        if tenant is None:
            log.info("rcpt.rejected", recipient=address, peer=_peer(session),
                     sender=envelope.mail_from)
            return replies.S550_UNKNOWN_RECIPIENT
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return replies.S250_RCPT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        task = asyncio.current_task()
        assert task is not None
        self.in_flight.add(task)
        self.idle.clear()
        try:
            return await self._deliver(envelope)
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
                recipients=envelope.rcpt_tos, local_part=self.local_part)
        except StorageUnavailable:
            return replies.S451_STORAGE
        except Exception:
            # A bug, not the sender's fault: defer so the mail is retried, never bounced.
            log.exception("data.failed", sender=envelope.mail_from, size=len(raw))
            return replies.S451_INTERNAL
        if not result.outcomes:
            return replies.S550_NO_VALID_RECIPIENT
        if not result.accepted:
            return replies.S550_SENDER_NOT_AUTHORIZED
        kept = {o.outcome for o in result.outcomes}
        if Outcome.FILED in kept:
            return replies.S250_FILED
        if Outcome.QUEUED in kept:
            return replies.S250_QUEUED
        return replies.S250_DUPLICATE


def _peer(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer)
