"""Whether the database is there with the schema this crm-mailer needs, for `serve`.

A daemon that exits because its database is down at boot takes the mail flow down with
it until someone restarts it. Instead `serve` listens at once and answers 451 (storage
unavailable, retry later) to every recipient until the database answers with the
current schema; from then on it serves without a restart. A database that answers with
an older schema at start is an operator's mistake and stops `serve` at once, as before;
one that comes back later with an older schema keeps the 451 and says so in the log.
"""

from __future__ import annotations

import asyncio

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_mailer.db import migrate
from crm_mailer.db.failures import DATABASE_ERRORS, unavailable
from crm_mailer.errors import SchemaOutdated

log = structlog.get_logger("crm_mailer.smtp")

FIRST_RETRY = 1.0  # seconds; doubled after each failed check, up to LAST_RETRY
LAST_RETRY = 30.0


class SchemaWatch:
    """`ready` once the database answered with the current schema; never unset again (a
    database that goes away later is each message's 451, see ingest)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.ready = False
        self._task: asyncio.Task[None] | None = None

    async def check(self) -> bool:
        """One check. Raises SchemaOutdated when the database answers with another schema;
        False when it cannot be reached."""
        try:
            await migrate.require_current(self.engine)
        except DATABASE_ERRORS as exc:
            if not unavailable(exc):
                raise
            log.warning("database.unavailable", error=type(exc).__name__,
                        detail=(str(exc).splitlines() or [""])[0][:200],
                        reply="451 to every recipient until it answers")
            return False
        self.ready = True
        log.info("database.ready")
        return True

    async def answers(self) -> bool:
        """Whether the database answers a query now (for systemd's STATUS)."""
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except DATABASE_ERRORS:
            return False
        return True

    async def start(self) -> None:
        """Check once now; if the database is not there, keep checking in the background."""
        if not await self.check():
            self._task = asyncio.create_task(self._until_ready(), name="schema-watch")

    async def _until_ready(self) -> None:
        delay = FIRST_RETRY
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, LAST_RETRY)
            try:
                if await self.check():
                    return
            except SchemaOutdated as exc:
                log.error("database.schema_outdated", error=str(exc),
                          reply="451 to every recipient until the schema is upgraded")
            except DATABASE_ERRORS as exc:  # refused, e.g. no permission: keep trying
                log.error("database.refused", error=f"{type(exc).__name__}: {exc}"[:500],
                          reply="451 to every recipient until it answers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
