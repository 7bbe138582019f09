"""Fixtures: real databases (SQLite and a throwaway PostgreSQL), a real SMTP server on loopback.

Every test that takes `database_url` runs on both backends. PostgreSQL comes from
CRM_MAILER_TEST_DATABASE_URL (a server where the user may CREATE DATABASE), else from
a cluster this suite starts from the local binaries. With CRM_MAILER_REQUIRE_POSTGRES
set (CI), a PostgreSQL test that was skipped fails the run.
"""

from __future__ import annotations

import asyncio
import email.policy
import email.utils
import itertools
import os
import shutil
import smtplib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm_mailer.db import migrate
from crm_mailer.db.engine import create_engine, session_factory
from crm_mailer.directory.importer import ImportReport, import_tenant
from crm_mailer.directory.spec import parse_directory
from crm_mailer.mail.freemail import FREE_MAIL
from crm_mailer.settings import Settings
from crm_mailer.smtp.server import SmtpServer
from tests import factories
from tests.pgcluster import PgCluster

TEMPLATE_DB = "crm_mailer_template"
_counter = itertools.count()


# --- PostgreSQL ------------------------------------------------------------------------------

def _pg_admin_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _pg_admin(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(_pg_admin_dsn(url))
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """URL of a PostgreSQL server the tests may create databases on."""
    if url := os.environ.get("CRM_MAILER_TEST_DATABASE_URL"):
        yield url
        return
    cluster = PgCluster()
    cluster.start()
    try:
        yield cluster.url
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_template(pg_admin_url: str) -> Iterator[str]:
    """A migrated template database; each test copies it (CREATE DATABASE ... TEMPLATE).

    Named for this process: sessions running at once on one server (bench/mutation.py runs
    two) must not drop each other's template.
    """
    name = f"{TEMPLATE_DB}_{os.getpid()}"

    async def build() -> None:
        await _pg_admin(pg_admin_url, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
        engine = create_engine(str(make_url(pg_admin_url).set(database=name)))
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(build())
    yield name
    asyncio.run(_pg_admin(pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"

    async def build() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(build())
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pg_database_url(pg_admin_url: str, pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test alone."""
    name = f"crm_test_{os.getpid()}_{next(_counter)}"
    asyncio.run(_pg_admin(pg_admin_url, f"CREATE DATABASE {name} TEMPLATE {pg_template}"))
    yield str(make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False))
    asyncio.run(_pg_admin(pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def pg_empty_database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database with no schema at all."""
    name = f"crm_empty_{os.getpid()}_{next(_counter)}"
    asyncio.run(_pg_admin(pg_admin_url, f"CREATE DATABASE {name}"))
    yield str(make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False))
    asyncio.run(_pg_admin(pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated database of the parametrized backend for this test alone."""
    if backend == "sqlite":
        path = tmp_path / "crm-mailer.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    return str(request.getfixturevalue("pg_database_url"))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


async def waiting_for_a_lock(sessions: async_sessionmaker[AsyncSession]) -> bool:
    """Whether a connection to this PostgreSQL database waits for a lock now."""
    async with sessions() as session:  # pg_stat_activity is read once per transaction
        return bool(await session.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")))


async def until_blocked_on_a_lock(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Return once a connection to this PostgreSQL database waits for a lock: the way race
    tests know the second operation reached the first one's lock, without sleeping."""
    for _ in range(1000):
        if await waiting_for_a_lock(sessions):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no connection started waiting for a lock within 10 s")


async def load_directory(sessions: async_sessionmaker[AsyncSession],
                         document: dict[str, Any], *,
                         free_mail: frozenset[str] = FREE_MAIL) -> ImportReport:
    report = ImportReport()
    async with sessions() as session, session.begin():
        for spec in parse_directory(factories.dumps(document), free_mail=free_mail):
            await import_tenant(session, spec, report)
    return report


@pytest.fixture
async def example(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    """The database with the README's import example loaded."""
    await load_directory(sessions, factories.directory())
    return sessions


# --- SMTP ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


def envelope_sender_of(raw: bytes) -> str:
    """The From address of a message, read simply, for use as its envelope sender."""
    header = BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    address = email.utils.parseaddr(str(header.get("From", "")))[1]
    return address if address and address.isascii() and "@" in address else "alice@xyz.de"


@dataclass
class SmtpClient:
    """A real smtplib client, run in a thread so the server shares the test's event loop."""

    host: str
    port: int

    async def send(self, raw: bytes, *, sender: str | None = None,
                   recipients: Sequence[str] = ("crm@xyz.hq.example",)) -> Reply:
        """One transaction; the DATA reply (or the first refusal before DATA).

        The envelope sender defaults to the message's From, as a mail server sets it
        when it relays its own user's mail (`sendmail -t`), else alice@xyz.de.
        """
        if sender is None:
            sender = envelope_sender_of(raw)
        return await asyncio.to_thread(self._send, raw, sender, list(recipients))

    def _send(self, raw: bytes, sender: str, recipients: list[str]) -> Reply:
        with smtplib.SMTP(self.host, self.port, timeout=30) as client:
            client.ehlo("client.test")
            code, text = client.mail(sender)
            if code != 250:
                return Reply(code, text.decode())
            accepted = 0
            last = Reply(0, "")
            for rcpt in recipients:
                code, text = client.rcpt(rcpt)
                last = Reply(code, text.decode())
                accepted += code == 250
            if not accepted:
                client.rset()
                return last
            code, text = client.data(raw)
            return Reply(code, text.decode())

    async def rcpt(self, recipient: str, sender: str = "alice@xyz.de") -> Reply:
        def run() -> Reply:
            with smtplib.SMTP(self.host, self.port, timeout=30) as client:
                client.ehlo("client.test")
                client.mail(sender)
                code, text = client.rcpt(recipient)
                return Reply(code, text.decode())
        return await asyncio.to_thread(run)


def no_dns(name: bytes) -> None:
    """The tests' DKIM resolver: offline, no key is published anywhere."""
    return None


@pytest.fixture
def settings() -> Settings:
    return Settings(database_url="unused", listen_host="127.0.0.1", listen_port=0,
                    hostname="crm-mailer.test", shutdown_timeout=5)


@pytest.fixture
async def smtp(sessions: async_sessionmaker[AsyncSession],
               settings: Settings) -> AsyncIterator[SmtpClient]:
    server = SmtpServer(settings, sessions, dns_txt=no_dns)
    host, port = await server.start()
    yield SmtpClient(host, port)
    await server.stop(grace=5)


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of the test's own, which it may stop and start (outages)."""
    cluster = PgCluster()
    cluster.start()
    yield cluster
    cluster.destroy()


# --- CI guard: PostgreSQL tests must run -----------------------------------------------------

_postgres_collected: list[str] = []
_postgres_skipped: list[str] = []
_postgres_ran: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _postgres_collected.extend(item.nodeid for item in items if "postgres" in item.keywords)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "postgres" not in report.keywords:
        return
    if report.skipped and "needs_corpus" not in report.keywords:
        # The shared corpus is optional outside CI; a skip for any other reason counts.
        _postgres_skipped.append(report.nodeid)
    elif report.when == "call":
        _postgres_ran.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not os.environ.get("CRM_MAILER_REQUIRE_POSTGRES"):
        return
    if _postgres_skipped or (_postgres_collected and not _postgres_ran):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = (f"CRM_MAILER_REQUIRE_POSTGRES is set but {len(_postgres_skipped)} PostgreSQL "
                   f"test(s) were skipped and {len(_postgres_ran)} ran")
        if reporter is not None:
            reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

