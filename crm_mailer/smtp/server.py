"""The SMTP server on the running event loop, with a graceful drain on shutdown.

DATA is read into one buffer (data.py) rather than aiosmtpd's list of lines.

Shutdown, as measured in FIELD-NOTES: stop listening; new MAIL gets 421; wait for
in-flight DATA to commit and answer; then tell idle sessions 421 and close them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import structlog
from aiosmtpd.smtp import MISSING, SMTP, syntax
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer.settings import Settings
from crm_mailer.smtp import replies
from crm_mailer.smtp.data import Overflow, read_message
from crm_mailer.smtp.handler import IngestHandler

log = structlog.get_logger("crm_mailer.smtp")


class CrmSMTP(SMTP):
    """aiosmtpd's SMTP with our line-length limit, connection tracking and DATA reader."""

    def __init__(self, handler: IngestHandler, *, line_length_limit: int,
                 connections: set[CrmSMTP], **kwargs: Any) -> None:
        # Real mail carries lines far past RFC 5321's 1,000 (HTML newsletters); the
        # size limit still bounds memory. Must be set before SMTP.__init__ reads it.
        self.line_length_limit = line_length_limit
        self._connections = connections
        super().__init__(handler, **kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._connections.discard(self)
        super().connection_lost(error)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, with the message read into one buffer."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push(replies.S503_NEED_RCPT)
            return
        if arg:
            await self.push(replies.S501_DATA_SYNTAX)
            return
        await self.push(replies.S354_START_DATA)
        try:
            received = await read_message(self._reader, max_size=self.data_size_limit,
                                          max_line_length=self.line_length_limit)
        except asyncio.CancelledError:
            log.info("smtp.data_interrupted", peer=_peer(self))
            self._writer.close()
            raise
        if isinstance(received, Overflow):
            log.info("smtp.data_refused", peer=_peer(self), limit=received.name.lower())
            self.envelope = self._create_envelope()
            await self.push(received.value)
            return
        self.envelope.content = self.envelope.original_content = received
        del received  # the envelope holds the only reference: gone with it
        status = await self._call_handler_hook("DATA")
        self.envelope = self._create_envelope()
        await self.push(replies.S250_OK if status is MISSING else str(status))


def _peer(protocol: SMTP) -> str:
    peer = protocol.session.peer if protocol.session else None
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


class SmtpServer:
    """crm_mailer's listening SMTP server."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.handler = IngestHandler(sessions, settings.local_part)
        self.connections: set[CrmSMTP] = set()
        self._server: asyncio.Server | None = None
        self.hostname = settings.hostname or socket.getfqdn()

    def _protocol(self) -> CrmSMTP:
        return CrmSMTP(
            self.handler,
            line_length_limit=self.settings.max_line_length,
            connections=self.connections,
            data_size_limit=self.settings.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self.hostname,
            ident="crm-mailer",
            timeout=300,
        )

    async def start(self, host: str | None = None, port: int | None = None) -> tuple[str, int]:
        """Listen; returns the bound address (port 0 picks a free one)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, host or self.settings.listen_host,
            self.settings.listen_port if port is None else port, reuse_address=True)
        bound = self._server.sockets[0].getsockname()
        log.info("smtp.listening", host=bound[0], port=bound[1])
        return bound[0], bound[1]

    async def stop(self, grace: float | None = None) -> None:
        """Drain: refuse new mail, let in-flight DATA finish, close the rest."""
        grace = self.settings.shutdown_timeout if grace is None else grace
        if self._server is not None:
            self._server.close()
        self.handler.draining = True
        try:
            await asyncio.wait_for(self.handler.idle.wait(), grace)
        except TimeoutError:
            log.warning("smtp.drain_timeout", in_flight=len(self.handler.in_flight))
        for protocol in list(self.connections):
            with contextlib.suppress(Exception):
                if protocol.transport is not None and not protocol.transport.is_closing():
                    await protocol.push(replies.S421_SHUTTING_DOWN)
                    protocol.transport.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        log.info("smtp.stopped")
