"""The shipped migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_mailer.db import migrate
from crm_mailer.db.engine import session_factory
from crm_mailer.db.models import Base
from crm_mailer.views import list_messages


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


async def test_0007_shows_every_stored_message_with_the_outcome_it_had(
        engine: AsyncEngine) -> None:
    """Nothing is backfilled: the outcome follows from the rows a message has. The view
    crm_messages and crm_mailer.views.list_messages read it alike; ignored is new."""
    message = (
        "INSERT INTO inbound_messages (id, tenant_id, message_id, message_id_derived, "
        "received_at, envelope_sender, envelope_recipients, direction, sender, recipients_to, "
        "recipients_cc, subject, sent_at, body, attachments, evidence, raw, raw_chunks) "
        "VALUES ({id}, 1, 'm{id}@x', false, CURRENT_TIMESTAMP, '', '[]', 'inbound', "
        "'bob@acme.com', '[]', '[]', 's', CURRENT_TIMESTAMP, '', '[]', '[]', '', 0)")
    pending = ("INSERT INTO pending_matches (id, tenant_id, inbound_message_id, state, "
               "reasons, candidates, created_at, note) "
               "VALUES ({id}, 1, {id}, '{state}', '{reasons}', '{{}}', CURRENT_TIMESTAMP, "
               "{note})")
    async with engine.begin() as connection:
        await connection.run_sync(downgrade_to("0006"))
        await connection.execute(text(
            "INSERT INTO tenants (id, slug, name, review, sender_policy, created_at) "
            "VALUES (1, 't', 'T', 'uncertain', 'aligned', CURRENT_TIMESTAMP)"))
        for row_id in range(1, 6):
            await connection.execute(text(message.format(id=row_id)))
        await connection.execute(text(
            "INSERT INTO history_entries (id, tenant_id, inbound_message_id, filed_at, "
            "filed_by) VALUES (1, 1, 1, CURRENT_TIMESTAMP, 'crm-mailer')"))
        for row_id, state, reasons, note in (
                (2, "waiting", '["no_number"]', "NULL"),
                (3, "rejected", '["no_contact"]', "'spam'"),
                (4, "expired", '["unknown_number"]', "NULL"),
                (5, "waiting", '["unprocessable"]', "NULL")):
            await connection.execute(text(pending.format(id=row_id, state=state,
                                                         reasons=reasons, note=note)))
    await migrate.upgrade(engine)
    async with engine.begin() as connection:  # ignored at once, and after reprocessing
        for row_id, reason in ((6, "auto_reply"), (7, "delivery_report")):
            await connection.execute(text(message.format(id=row_id)))
            await connection.execute(text(
                f"UPDATE inbound_messages SET ignored = '{reason}' WHERE id = {row_id}"))
        await connection.execute(text(pending.format(id=7, state="rejected",
                                                     reasons='["unprocessable"]',
                                                     note="'machine mail'")))
    async with engine.connect() as connection:
        rows = (await connection.execute(text(
            "SELECT id, tenant, outcome, reasons, note, history_id, pending_id "
            "FROM crm_messages ORDER BY id"))).all()
    shown = [(row_id, tenant, outcome, json.loads(reasons) if isinstance(reasons, str)
              else reasons, note, entry, item)
             for row_id, tenant, outcome, reasons, note, entry, item in rows]
    assert shown == [
        (1, "t", "filed", [], None, 1, None),
        (2, "t", "queued", ["no_number"], None, None, 2),
        (3, "t", "refused", ["no_contact"], "spam", None, 3),
        (4, "t", "expired", ["unknown_number"], None, None, 4),
        (5, "t", "queued", ["unprocessable"], None, None, 5),
        (6, "t", "ignored", ["auto_reply"], None, None, None),
        (7, "t", "ignored", ["delivery_report"], "machine mail", None, 7),
    ]
    async with session_factory(engine)() as session:
        listed = await list_messages(session, 1)
    assert [(m["id"], m["outcome"], m["reasons"], m["note"], m["history"], m["pending"])
            for m in reversed(listed)] == [row[:1] + row[2:] for row in shown]
