"""A PostgreSQL that goes away: 451 so the relay retries, the daemon keeps serving, nothing lost.

Uses its own throwaway cluster (it is stopped and started here), from the local binaries.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from crm_mailer import metrics
from crm_mailer.db import migrate
from crm_mailer.db.engine import create_engine, session_factory
from crm_mailer.settings import Settings
from crm_mailer.smtp.server import SmtpServer
from tests import factories
from tests.conftest import SmtpClient, load_directory
from tests.integration.test_smtp_ingest import history
from tests.pgcluster import PgCluster

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_engine(cluster: PgCluster) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(cluster.url)
    await migrate.upgrade(engine)
    await load_directory(session_factory(engine), factories.directory())
    yield engine
    await engine.dispose()


def database_errors() -> float:
    """The metric operators alert on: database failures answered with 451."""
    return metrics.REGISTRY.get_sample_value("crm_mailer_database_errors_total") or 0.0


async def test_stopped_database_gets_451_and_the_retry_is_stored_once(
        cluster: PgCluster, pg_engine: AsyncEngine, settings: Settings) -> None:
    sessions = session_factory(pg_engine)
    server = SmtpServer(settings, sessions)
    host, port = await server.start()
    smtp = SmtpClient(host, port)
    raw = factories.mail(message_id="<outage@xyz.de>")
    try:
        # The database goes away between RCPT and the end of DATA.
        def deliver_while_stopping() -> tuple[int, bytes, int]:
            with smtplib.SMTP(host, port, timeout=60) as client:
                client.ehlo()
                client.mail("alice@xyz.de")
                assert client.rcpt("crm@xyz.hq.example")[0] == 250
                cluster.stop()
                code, text = client.data(raw)
                # The session stays usable: the next transaction gets a clear answer too.
                client.rset()
                client.mail("alice@xyz.de")
                return code, text, client.rcpt("crm@xyz.hq.example")[0]

        errors_before = database_errors()
        with capture_logs() as logs:
            code, text, next_rcpt = await asyncio.to_thread(deliver_while_stopping)
        assert (code, text[:5]) == (451, b"4.3.0")
        assert next_rcpt == 451
        assert any(e["event"] == "storage_unavailable" for e in logs)
        assert database_errors() == errors_before + 2  # the DATA and the next RCPT

        # Still down: a new connection is answered, not dropped.
        reply = await smtp.send(raw)
        assert (reply.code, reply.text[:5]) == (451, "4.3.0")

        # The relaying server retries once the database is back: stored exactly once.
        await asyncio.to_thread(cluster.start)
        assert (await smtp.send(raw)).code == 250
        assert (await smtp.send(raw)).code == 250
        [entry] = await history(sessions)
        assert entry["message_id"] == "outage@xyz.de" and entry["lead"] == 11111
    finally:
        await server.stop(grace=5)


async def test_a_restart_between_messages_costs_no_451(
        cluster: PgCluster, pg_engine: AsyncEngine, settings: Settings) -> None:
    """The pool's idle connections die with the restart; the next message gets fresh ones
    (crm_mailer.db.engine checks each connection handed out) instead of a 451."""
    sessions = session_factory(pg_engine)
    server = SmtpServer(settings, sessions)
    host, port = await server.start()
    smtp = SmtpClient(host, port)
    try:
        assert (await smtp.send(factories.mail(message_id="<before@xyz.de>"))).code == 250
        await asyncio.to_thread(cluster.stop, "fast")  # backends closed as on a restart
        await asyncio.to_thread(cluster.start)
        await asyncio.sleep(0.2)  # the loop sees the closed sockets
        assert (await smtp.send(factories.mail(message_id="<after@xyz.de>"))).code == 250
        assert sorted(e["message_id"] for e in await history(sessions)) == [
            "after@xyz.de", "before@xyz.de"]
    finally:
        await server.stop(grace=5)
