"""How many statements one message costs over SMTP (issue 10: round trips are where the
daemon's time goes). Not a timing: a count, the same on every machine, so that a change
that adds a round trip to every message is seen in review, not in production."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests import factories
from tests.conftest import SmtpClient


@pytest.fixture
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements run from here on (SELECT, INSERT, ...; not BEGIN, COMMIT)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
            seen.append(" ".join(statement.split())[:80])

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_a_filed_message_costs_seven_statements(
        example: async_sessionmaker[AsyncSession], smtp: SmtpClient,
        statements: list[str]) -> None:
    assert (await smtp.send(factories.mail(message_id="<trips@xyz.de>"))).code == 250
    # RCPT: the tenant of crm@ (1). DATA's sender check: the sender's facts, with the tenant
    # RCPT found (1). The store: the tenant again and the facts, in its transaction (2);
    # the message, the history entry and its participant (3).
    tenant_lookups = [s for s in statements if s.startswith("SELECT tenant_hosts.host, tenants.id")]
    assert len(tenant_lookups) == 2, statements
    assert len(statements) == 7, statements
