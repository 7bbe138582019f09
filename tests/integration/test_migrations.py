"""The shipped migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_mailer.db import migrate
from crm_mailer.db.models import Base


async def test_migrated_schema_matches_the_models(engine: AsyncEngine) -> None:
    def diff(connection: Any) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as connection:
        assert await connection.run_sync(diff) == []
    assert await migrate.current_revision(engine) == migrate.head_revision()


async def test_migrations_downgrade_to_nothing_and_back(engine: AsyncEngine) -> None:
    def downgrade(connection: Any) -> None:
        config = migrate.alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "base")

    async with engine.begin() as connection:
        await connection.run_sync(downgrade)
    assert await migrate.current_revision(engine) is None
    await migrate.upgrade(engine)
    assert await migrate.current_revision(engine) == migrate.head_revision()
