"""Apply and check the schema migrations shipped inside the package."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_mailer.errors import SchemaOutdated

SCRIPT_LOCATION = "crm_mailer.db:migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def head_revision() -> str | None:
    """The newest revision this version of crm_mailer ships."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database schema up to `revision` (default: the newest)."""

    def run(connection: Any) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None for an empty database)."""

    def read(connection: Any) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def require_current(engine: AsyncEngine) -> None:
    """Raise SchemaOutdated unless the database is at the shipped head revision."""
    current, head = await current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutdated(
            f"the database schema is at {current or 'nothing'}, this crm-mailer needs {head}: "
            "run `crm-mailer db upgrade`"
        )
