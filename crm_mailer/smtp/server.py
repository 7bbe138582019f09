"""The SMTP server on the running event loop: limits at the edge, a graceful drain on shutdown.

At connect: trusted networks and connection limits (access.py), refused before the greeting.
In the session: a reply and a close after command_timeout of silence; MAIL and the rest
refused before STARTTLS when require_tls; at DATA, a wait for one of max_concurrent_messages
slots, then the message read into one buffer (data.py) within data_timeout.

Shutdown, as measured in FIELD-NOTES: stop listening; new MAIL gets 421; wait for
in-flight DATA to commit and answer; then tell idle sessions 421 and close them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, AnyStr

import structlog
from aiosmtpd.smtp import MISSING, SMTP, Envelope, syntax
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer import metrics
from crm_mailer.ingest import IngestConfig
from crm_mailer.mail.proof import DnsTxt, registrable_domain
from crm_mailer.settings import Settings
from crm_mailer.smtp import replies
from crm_mailer.smtp.access import Admission, Lease, MessageSlots, Refusal, client_address
from crm_mailer.smtp.data import Overflow, read_message
from crm_mailer.smtp.handler import IngestHandler, TenantEnvelope
from crm_mailer.smtp.tls import ServerCertificate

log = structlog.get_logger("crm_mailer.smtp")

# RFC 3207 4: what a client may say before STARTTLS when require_tls is set.
ALLOWED_BEFORE_STARTTLS = frozenset({"EHLO", "HELO", "NOOP", "RSET", "QUIT", "STARTTLS"})

# Seconds a closing connection gets to take its last reply; a client that reads nothing
# cannot keep its connection (and its place in the limits) open past this.
CLOSE_GRACE = 5.0

SmtpMethod = Callable[[str], Awaitable[None]]


class CrmSMTP(SMTP):
    """One client's SMTP session: aiosmtpd's, with crm_mailer's limits at the edge."""

    def __init__(self, handler: IngestHandler, *, settings: Settings, admission: Admission,
                 message_slots: MessageSlots, connections: set[CrmSMTP],
                 tls_context: ssl.SSLContext | None, **kwargs: Any) -> None:
        # Real mail carries lines far past RFC 5321's 1,000 (HTML newsletters); the
        # size limit still bounds memory. Must be set before SMTP.__init__ reads it.
        self.line_length_limit = settings.max_line_length
        self._command_timeout = settings.command_timeout
        self._data_timeout = settings.data_timeout
        self._admission = admission
        self._message_slots = message_slots
        self._slot_owner = ""
        self._connections = connections
        self._lease: Lease | None = None
        self._refusal: Refusal | None = None
        self._timeout_reply = replies.S421_COMMAND_TIMEOUT
        super().__init__(handler, data_size_limit=settings.max_message_size,
                         enable_SMTPUTF8=True, decode_data=False, tls_context=tls_context,
                         timeout=settings.command_timeout, **kwargs)
        if settings.require_tls:
            # aiosmtpd's own require_starttls answers without an enhanced status code.
            self._smtp_methods = {
                name: method if name in ALLOWED_BEFORE_STARTTLS else self._after_starttls(method)
                for name, method in self._smtp_methods.items()}

    @property
    def peer(self) -> str:
        """The client's address, for logs."""
        return client_address(self.session.peer if self.session else None)

    # --- the connection: admitted or refused at connect, counted until it is gone ----------

    def _create_envelope(self) -> Envelope:
        return TenantEnvelope()  # RCPT's tenants go on to DATA

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tcp = self._original_transport is None  # not the switch to TLS after STARTTLS
        if tcp:
            verdict = self._admission.admit(client_address(transport.get_extra_info("peername")))
            if isinstance(verdict, Lease):
                self._lease = verdict
                self._connections.add(self)
                metrics.CONNECTIONS.inc()
            else:
                self._refusal = verdict
        super().connection_made(transport)
        if tcp and self._handler_coroutine is not None:
            # Also when the session ends without connection_lost (a TLS handshake aborted).
            self._handler_coroutine.add_done_callback(lambda _: self._gone())

    def connection_lost(self, error: Exception | None) -> None:
        self._gone()
        super().connection_lost(error)

    def _gone(self) -> None:
        """Give back the connection's place in the limits; safe to call more than once."""
        if self._lease is not None:
            self._lease.release()
            self._lease = None  # counted once, however often this runs
            metrics.CONNECTIONS.dec()
        self._connections.discard(self)

    async def _handle_client(self) -> None:
        if self._refusal is not None:
            log.info("smtp.refused", peer=self.peer, limit=self._refusal.limit)
            self.close_with(self._refusal.reply)
            return
        await super()._handle_client()

    def close_with(self, reply: str) -> None:
        """Send a last reply and close, without waiting for a client that does not read."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        tcp = self._original_transport or transport
        if tcp is not transport and self.session and self.session.ssl is None:
            # Inside a TLS handshake: no plain-text reply. An aborted handshake never
            # reports connection_lost, so end the session too (that gives its place back).
            if isinstance(tcp, asyncio.WriteTransport):
                tcp.abort()
            if self._handler_coroutine is not None:
                self._handler_coroutine.cancel()
            return
        self._writer.write(reply.encode("ascii") + b"\r\n")
        transport.close()
        if isinstance(tcp, asyncio.WriteTransport):
            self.loop.call_later(CLOSE_GRACE, tcp.abort)

    # --- fairness: no client keeps the loop ----------------------------------------------

    async def push(self, status: AnyStr) -> None:
        """A turn for every other session, then aiosmtpd's push. Commands a client has
        already sent are read from the buffer without waiting on the socket, and every
        reply comes here: 200,000 pipelined NOOPs held the loop for two seconds. The turn
        comes before the reply is written, never between a reply and what follows it:
        STARTTLS switches the transport right after its 220, and a ClientHello read in
        between would go to the plain-text reader."""
        await asyncio.sleep(0)
        await super().push(status)

    # --- timeouts: command_timeout between commands, data_timeout for DATA -----------------

    def _reset_timeout(self, duration: float | None = None) -> None:
        # aiosmtpd calls this at connect and before each command it accepts.
        self._arm(duration or self._command_timeout, replies.S421_COMMAND_TIMEOUT)

    def _arm(self, seconds: float, reply: str) -> None:
        self._disarm()
        self._timeout_reply = reply
        self._timeout_handle = self.loop.call_later(seconds, self._timeout_cb)

    def _disarm(self) -> None:
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()

    def _timeout_cb(self) -> None:
        # aiosmtpd's own closes without a word; the client should know why.
        log.info("smtp.timeout", peer=self.peer, reply=self._timeout_reply)
        self.close_with(self._timeout_reply)

    # --- require_tls ----------------------------------------------------------------------

    def _after_starttls(self, method: SmtpMethod) -> SmtpMethod:
        @functools.wraps(method)  # keeps the HELP text
        async def guarded(arg: str) -> None:
            if self._tls_protocol is None:
                await self.push(replies.S530_STARTTLS_FIRST)
                return
            await method(arg)
        return guarded

    # --- DATA: a bounded number at once, each in one buffer -------------------------------

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, with a slot of max_concurrent_messages and one buffer."""
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
        if not await self._take_message_slot():
            return
        try:
            reply = await self._receive_and_deliver()
        finally:
            self._message_slots.release(self._slot_owner)
            if self.transport is not None:  # back to waiting for the next command
                self._reset_timeout()
        await self.push(reply)

    async def _take_message_slot(self) -> bool:
        """Wait at most data_timeout for a free slot; False when the client was answered."""
        self._disarm()  # waiting is the server's doing, not the client's silence
        self._slot_owner = self.peer
        try:
            async with asyncio.timeout(self._data_timeout):
                await self._message_slots.acquire(self._slot_owner)
        except TimeoutError:
            log.warning("smtp.busy", peer=self.peer, waited=self._data_timeout)
            self.envelope = self._create_envelope()
            self._reset_timeout()
            await self.push(replies.S451_BUSY)
            return False
        if self.event_handler.draining:  # shutdown began while it waited
            self._message_slots.release(self._slot_owner)
            self.close_with(replies.S421_SHUTTING_DOWN)
            return False
        return True

    async def _receive_and_deliver(self) -> str:
        """Read the message within data_timeout, hand it to the handler; the reply to send."""
        assert self.envelope is not None
        self._arm(self._data_timeout, replies.S421_DATA_TIMEOUT)
        await self.push(replies.S354_START_DATA)
        try:
            received = await read_message(self._reader, max_size=self.data_size_limit,
                                          max_line_length=self.line_length_limit)
        except asyncio.CancelledError:
            log.info("smtp.data_interrupted", peer=self.peer)
            self._writer.close()
            raise
        self._disarm()  # the handler's time is not the client's
        if isinstance(received, Overflow):
            log.info("smtp.data_refused", peer=self.peer, limit=received.name.lower())
            self.envelope = self._create_envelope()
            return received.value
        self.envelope.content = self.envelope.original_content = received
        del received  # the envelope holds the only reference: gone with it
        status = await self._call_handler_hook("DATA")
        self.envelope = self._create_envelope()
        return replies.S250_OK if status is MISSING else str(status)


class SmtpServer:
    """crm_mailer's listening SMTP server."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], *,
                 dns_txt: DnsTxt | None = None,
                 ready: Callable[[], bool] = lambda: True) -> None:
        """`dns_txt` answers DKIM key lookups; None: the system's resolver. `ready`: whether
        the database is there with the current schema; until it is, recipients get 451."""
        self.settings = settings
        self.handler = IngestHandler(sessions, settings.local_part,
                                     IngestConfig.from_settings(settings, dns_txt), ready)
        self.connections: set[CrmSMTP] = set()
        self.admission = Admission(settings)
        self.message_slots = MessageSlots(settings.max_concurrent_messages,
                                          settings.max_messages_per_client)
        self.certificate = (ServerCertificate(settings.tls_cert_file, settings.tls_key_file)
                            if settings.tls_cert_file else None)
        self._server: asyncio.Server | None = None
        self.hostname = settings.hostname or socket.getfqdn()

    def _protocol(self) -> CrmSMTP:
        return CrmSMTP(
            self.handler,
            settings=self.settings,
            admission=self.admission,
            message_slots=self.message_slots,
            connections=self.connections,
            tls_context=self.certificate.context if self.certificate else None,
            hostname=self.hostname,
            ident="crm-mailer",
        )

    def reload_tls(self) -> bool:
        """Read the TLS certificate and key again (SIGHUP); new connections present them."""
        if self.certificate is None:
            log.info("tls.reload_skipped", reason="no tls_cert_file configured")
            return False
        return self.certificate.reload()

    async def start(self, host: str | None = None, port: int | None = None, *,
                    reuse_port: bool = False) -> tuple[str, int]:
        """Listen; returns the bound address (port 0 picks a free one). `reuse_port`: share
        the port with the other workers (SO_REUSEPORT)."""
        loop = asyncio.get_running_loop()
        # Load the Public Suffix List now (about 0.1 s), not while the first message waits.
        await asyncio.to_thread(registrable_domain, "example.com")
        self._server = await loop.create_server(
            self._protocol, host or self.settings.listen_host,
            self.settings.listen_port if port is None else port, reuse_address=True,
            reuse_port=reuse_port or None)
        bound = self._server.sockets[0].getsockname()
        log.info("smtp.listening", host=bound[0], port=bound[1],
                 loop=type(loop).__module__.partition(".")[0])  # uvloop or asyncio
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
                protocol.close_with(replies.S421_SHUTTING_DOWN)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        log.info("smtp.stopped")
