"""Clients and a server fixture for tests of the SMTP edge's limits.

`RawClient` talks raw asyncio streams, for what smtplib will not do on purpose (stall,
trickle, reset); `edge` starts a real SmtpServer on the test's event loop with the test's
limits, so every wait in a test is a real one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer.settings import Settings
from crm_mailer.smtp.server import SmtpServer
from tests.conftest import Reply

# Connection-level behaviour does not depend on the database: one backend is enough there.
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])


@dataclasses.dataclass
class RawClient:
    """An SMTP client on raw asyncio streams: it says exactly what the test tells it to."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def connect(cls, host: str, port: int, *, source: str | None = None) -> RawClient:
        reader, writer = await asyncio.open_connection(
            host, port, local_addr=(source, 0) if source else None)
        return cls(reader, writer)

    async def reply(self, within: float = 5) -> Reply:
        """The next reply (the last line of a multi-line one); code 0 when the server closed."""
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), within)
            if not line:
                return Reply(0, "connection closed")
            lines.append(line.decode().rstrip("\r\n"))
            if line[3:4] != b"-":
                return Reply(int(lines[-1][:3]), lines[-1][4:])

    async def command(self, line: str | bytes, within: float = 5) -> Reply:
        self.send(line if isinstance(line, bytes) else line.encode() + b"\r\n")
        return await self.reply(within)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def greeted(self) -> RawClient:
        """Read the greeting (must be 220) and say EHLO."""
        assert (await self.reply()).code == 220
        assert (await self.command("EHLO client.test")).code == 250
        return self

    async def start_data(self, sender: str = "alice@xyz.de",
                         recipient: str = "crm@xyz.hq.example") -> None:
        """MAIL and RCPT, then DATA without waiting for its reply."""
        assert (await self.command(f"MAIL FROM:<{sender}>")).code == 250
        assert (await self.command(f"RCPT TO:<{recipient}>")).code == 250
        self.send(b"DATA\r\n")

    async def closed(self, within: float = 5) -> bool:
        """True when the server has closed (EOF or reset) within `within` seconds."""
        try:
            return await asyncio.wait_for(self.reader.read(), within) == b""
        except ConnectionResetError:
            return True

    def reset(self) -> None:
        """Drop the connection abruptly: an RST, not a FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    def close(self) -> None:
        self.writer.close()


def dotted(raw: bytes) -> bytes:
    """A message as DATA carries it: dot-stuffed, ending with the lone dot."""
    lines = raw.split(b"\r\n")
    if lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n"
                    for line in lines) + b".\r\n"


@dataclasses.dataclass
class Edge:
    """A running SmtpServer with changed limits, and ways to talk to it."""

    server: SmtpServer
    host: str
    port: int
    clients: list[RawClient] = dataclasses.field(default_factory=list)

    async def client(self, *, source: str | None = None) -> RawClient:
        client = await RawClient.connect(self.host, self.port, source=source)
        self.clients.append(client)
        return client

    async def deliver(self, raw: bytes) -> Reply:
        """One whole transaction on a new connection; the DATA reply."""
        client = await (await self.client()).greeted()
        try:
            await client.start_data()
            assert (await client.reply()).code == 354
            client.send(dotted(raw))
            return await client.reply(within=30)
        finally:
            client.close()

    async def until_counted(self, expected: int, within: float = 5) -> None:
        """Wait until the server counts `expected` open connections (closing takes a turn)."""
        deadline = time.monotonic() + within
        while self.server.admission.open != expected:
            assert time.monotonic() < deadline, (self.server.admission.open, expected)
            await asyncio.sleep(0.01)


StartEdge = Callable[..., Awaitable[Edge]]


@pytest.fixture
async def edge(example: async_sessionmaker[AsyncSession],
               settings: Settings) -> AsyncIterator[StartEdge]:
    """Starts a server with the test's limits (`dataclasses.replace` of the settings)."""
    started: list[Edge] = []

    async def start(**limits: Any) -> Edge:
        server = SmtpServer(dataclasses.replace(settings, **limits), example)
        host, port = await server.start()
        started.append(Edge(server, host, port))
        return started[-1]

    yield start
    for served in started:
        await served.server.stop(grace=2)
        for client in served.clients:
            client.close()
