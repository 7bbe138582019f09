"""Which database failures are "storage unavailable" (451, retry) and which are refusals a
retry cannot fix, with the real drivers' errors on both backends."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm_mailer.db.engine import create_engine
from crm_mailer.db.failures import DATABASE_ERRORS, unavailable
from crm_mailer.db.models import Lead, PendingMatch, fits
from tests import factories
from tests.conftest import SmtpClient
from tests.integration.test_smtp_ingest import pending
from tests.pgcluster import free_port


async def failure(engine: AsyncEngine, statement: object) -> BaseException:
    try:
        async with engine.connect() as connection:
            await connection.execute(statement)  # type: ignore[call-overload]
    except DATABASE_ERRORS as exc:
        return exc
    raise AssertionError("no failure")


async def test_a_refused_statement_is_not_unavailable(engine: AsyncEngine) -> None:
    assert not unavailable(await failure(engine, text("SELECT * FROM no_such_table")))
    if engine.dialect.name == "postgresql":  # SQLite computes these without complaint
        assert not unavailable(await failure(engine, text("SELECT 1/0")))
        assert not unavailable(await failure(engine, text("SELECT 'x'::integer")))
        too_big = select(PendingMatch).where(PendingMatch.id == 2**31)
        assert not unavailable(await failure(engine, too_big))


@pytest.mark.postgres
async def test_a_server_that_is_not_there_is_unavailable() -> None:
    engine = create_engine(f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    try:
        assert unavailable(await failure(engine, text("SELECT 1")))
    finally:
        await engine.dispose()


def test_fits_follows_the_column_type() -> None:
    assert fits(PendingMatch.id, 2**31 - 1) and not fits(PendingMatch.id, 2**31)
    assert fits(Lead.number, 2**63 - 1) and not fits(Lead.number, 2**63)
    assert fits(Lead.name, 10**30)  # not an integer column: nothing to refuse


async def test_a_locked_sqlite_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 0.05})
    holder = sqlite3.connect(path)
    try:
        holder.execute("CREATE TABLE t (x)")
        holder.execute("BEGIN EXCLUSIVE")
        assert unavailable(await failure(engine, text("SELECT * FROM t")))
    finally:
        holder.close()
        await engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize(("state", "tries"), [("22023", 1), ("23503", 2)],
                         ids=["data exception", "foreign key violation"])
async def test_a_statement_the_database_refuses_keeps_the_mail_with_250(
        example: async_sessionmaker[AsyncSession], engine: AsyncEngine,
        smtp: SmtpClient, state: str, tries: int) -> None:
    """A relay retries a 451 for days: a failure no retry can fix must not be one. Here
    PostgreSQL refuses every new history entry (a trigger raising the SQLSTATE): the mail
    is kept as unprocessable, waiting for a person, and answered 250. A foreign key
    violation is what a lead deleted meanwhile looks like, so the daemon matches the mail
    once more first (a sequence, which no rollback undoes, counts the tries)."""
    async with engine.begin() as connection:
        await connection.execute(text("CREATE SEQUENCE tries"))
        await connection.execute(text(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "PERFORM nextval('tries'); "
            f"RAISE EXCEPTION 'refused by the test' USING ERRCODE = '{state}'; END $$"))
        await connection.execute(text(
            "CREATE TRIGGER refuse BEFORE INSERT ON history_entries "
            "FOR EACH ROW EXECUTE FUNCTION refuse()"))
    reply = await smtp.send(factories.mail(), recipients=["crm@xyz.hq.example"])
    assert (reply.code, reply.text) == (250, "2.0.0 Message accepted and kept; it could not "
                                             "be processed and waits for a person")
    [waiting] = await pending(example)
    assert waiting["reasons"] == ["unprocessable"]
    assert "refused by the test" in waiting["error"]
    async with engine.connect() as connection:
        assert await connection.scalar(text("SELECT last_value FROM tries")) == tries
