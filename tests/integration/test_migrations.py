"""The shipped migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
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


def downgrade_to(revision: str) -> Callable[[Any], None]:
    def downgrade(connection: Any) -> None:
        config = migrate.alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
    return downgrade


async def test_migrations_downgrade_to_nothing_and_back(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(downgrade_to("base"))
    assert await migrate.current_revision(engine) is None
    await migrate.upgrade(engine)
    assert await migrate.current_revision(engine) == migrate.head_revision()


async def test_0004_rekeys_stored_message_ids_exactly_from_the_raw_bytes(
        engine: AsyncEngine) -> None:
    """Rows stored with the old, lossy key get the exact one; nothing else changes."""
    async with engine.begin() as connection:
        await connection.run_sync(downgrade_to("0003"))
        await connection.execute(text(
            "INSERT INTO tenants (id, slug, name, review, created_at) "
            "VALUES (1, 't', 'T', 'uncertain', CURRENT_TIMESTAMP)"))
        rows = [
            (1, "?42@r", False, "Message-ID: <ä42@r>\r\n\r\nx".encode()),  # read lossily
            (2, "plain@x", False, b"Message-ID: <plain@x>\r\n\r\nx"),
            (3, "abc@derived.crm-mailer.invalid", True, b"Subject: none\r\n\r\nx"),
            (4, "nulid@x", False, b"Message-ID: <nul\x00id@x>\r\n\r\nx"),
        ]
        for row_id, key, derived, raw in rows:
            await connection.execute(text(
                "INSERT INTO inbound_messages (id, tenant_id, message_id, message_id_derived, "
                "received_at, envelope_sender, envelope_recipients, direction, sender, "
                "recipients_to, recipients_cc, subject, sent_at, body, attachments, evidence, "
                "raw) VALUES (:id, 1, :key, :derived, CURRENT_TIMESTAMP, '', '[]', 'inbound', "
                "'', '[]', '[]', '', CURRENT_TIMESTAMP, '', '[]', '[]', :raw)"),
                {"id": row_id, "key": key, "derived": derived, "raw": raw})
    await migrate.upgrade(engine)
    async with engine.connect() as connection:
        keys = dict((await connection.execute(
            text("SELECT id, message_id FROM inbound_messages ORDER BY id"))).all())
    assert keys == {1: "ä42@r", 2: "plain@x", 3: "abc@derived.crm-mailer.invalid",
                    4: "nul%00id@x@escaped.crm-mailer.invalid"}


async def test_0005_marks_existing_records_as_imported_as_they_are(engine: AsyncEngine) -> None:
    """Rows from before 0005 get `{}`: the first import after the upgrade treats their
    current values as the last imported ones, so it applies the file as it used to."""
    async with engine.begin() as connection:
        await connection.run_sync(downgrade_to("0004"))
        for statement in (
                "INSERT INTO tenants (id, slug, name, review, sender_policy, created_at) "
                "VALUES (1, 't', 'T', 'uncertain', 'aligned', CURRENT_TIMESTAMP)",
                "INSERT INTO companies (id, tenant_id, key, name) VALUES (1, 1, 'acme', 'ACME')",
                "INSERT INTO contacts (id, tenant_id, company_id, email, name) "
                "VALUES (1, 1, 1, 'bob@acme.com', 'Bob')",
                "INSERT INTO lead_statuses (id, tenant_id, name, kind, position) "
                "VALUES (1, 1, 'Neu', 'open', 0)",
                "INSERT INTO projects (id, tenant_id, number, name, is_sales_project) "
                "VALUES (1, 1, 20001, 'P', false)",
                "INSERT INTO leads (id, tenant_id, number, name, status_id) "
                "VALUES (1, 1, 11111, 'L', 1)"):
            await connection.execute(text(statement))
    await migrate.upgrade(engine)
    async with engine.connect() as connection:
        for table in ("tenants", "lead_statuses", "companies", "contacts", "projects",
                      "leads"):
            [value] = (await connection.execute(text(f"SELECT imported FROM {table}"))).scalars()
            assert value in ({}, "{}"), table  # PostgreSQL's json reads back as a dict


async def test_0006_gives_existing_leads_and_projects_their_name_keys(
        engine: AsyncEngine) -> None:
    """The key is computed in Python (casefold), for rows from before 0006 too."""
    async with engine.begin() as connection:
        await connection.run_sync(downgrade_to("0005"))
        for statement in (
                "INSERT INTO tenants (id, slug, name, review, sender_policy, created_at) "
                "VALUES (1, 't', 'T', 'uncertain', 'aligned', CURRENT_TIMESTAMP)",
                "INSERT INTO lead_statuses (id, tenant_id, name, kind, position) "
                "VALUES (1, 1, 'Neu', 'open', 0)",
                "INSERT INTO projects (id, tenant_id, number, name, is_sales_project) "
                "VALUES (1, 1, 20001, 'Übernahme STRASSE', false)",
                "INSERT INTO leads (id, tenant_id, number, name, status_id) "
                "VALUES (1, 1, 11111, '  Website-Relaunch  Straße ', 1)"):
            await connection.execute(text(statement))
    await migrate.upgrade(engine)
    async with engine.connect() as connection:
        keys = [(await connection.execute(text(f"SELECT name_key FROM {table}"))).scalar_one()
                for table in ("projects", "leads")]
    assert keys == ["übernahme strasse", "website-relaunch strasse"]
