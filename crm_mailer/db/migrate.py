"""Apply and check the schema migrations shipped inside the package."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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

    async with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            await _sqlite_foreign_keys(connection, on=False)
        try:
            async with connection.begin():
                await connection.run_sync(run)
        finally:
            if sqlite:
                await _sqlite_foreign_keys(connection, on=True)


async def _sqlite_foreign_keys(connection: AsyncConnection, *, on: bool) -> None:
    """Switch SQLite's foreign keys, outside any transaction (inside, the pragma is ignored).

    Alembic alters a SQLite table by copying it and dropping the old one; with foreign
    keys on, that DROP deletes every row that refers to the table (ON DELETE CASCADE):
    altering `tenants` would empty the whole database.
    """
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await driver.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


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
