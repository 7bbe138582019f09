"""`history changes`: who moved a filed entry, when, from where to where."""

from __future__ import annotations

import argparse

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_mailer.cli.output import print_rows
from crm_mailer.cli.shared import add_action
from crm_mailer.db.engine import reading, session_factory
from crm_mailer.db.models import HistoryChange, HistoryEntry, fits
from crm_mailer.errors import NotFound
from crm_mailer.leads.scope import tenant_scope
from crm_mailer.settings import Settings

COLUMNS = ("changed_at", "changed_by", "before", "after")


def register(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_action(actions, "changes",
               "the corrections of a filed entry: who, when, from and to (oldest first)",
               _changes, item="id")


def _placement(value: dict[str, object]) -> str:
    """{"company": "acme", "lead": 11111, ...} as 'company acme, lead 11111'."""
    return ", ".join(f"{key} {value[key]}" for key in ("company", "contact", "lead", "project")
                     if value.get(key) is not None) or "-"


async def _changes(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> int:
    async with reading(session_factory(engine)) as session:
        tenant = await tenant_scope(session, args.tenant)
        entry = await session.scalar(select(HistoryEntry).where(
            HistoryEntry.id == args.id, HistoryEntry.tenant_id == tenant.id)) \
            if fits(HistoryEntry.id, args.id) else None
        if entry is None:
            raise NotFound(f"no history entry {args.id} in tenant '{tenant.slug}'")
        changes = (await session.scalars(
            select(HistoryChange).where(HistoryChange.history_entry_id == entry.id,
                                        HistoryChange.tenant_id == tenant.id)
            .order_by(HistoryChange.changed_at, HistoryChange.id))).all()
        rows = [{"changed_at": c.changed_at.isoformat(), "changed_by": c.changed_by,
                 "before": c.before if args.format == "json" else _placement(c.before),
                 "after": c.after if args.format == "json" else _placement(c.after)}
                for c in changes]
        filed = {"filed_at": entry.filed_at.isoformat(), "filed_by": entry.filed_by}
    if args.format == "table":
        print(f"entry {args.id}: filed {filed['filed_at']} by {filed['filed_by']}")
    print_rows(rows, args.format, COLUMNS)
    return 0
