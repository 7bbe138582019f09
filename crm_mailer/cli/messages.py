"""Message commands: `messages list` shows what became of received mail; `reprocess` runs
mail kept as unprocessable through the pipeline again."""

from __future__ import annotations

import argparse

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from crm_mailer.cli import arguments
from crm_mailer.cli.output import print_rows
from crm_mailer.cli.shared import add_action, add_tenant, scoped
from crm_mailer.db.engine import reading, session_factory
from crm_mailer.ingest import IngestConfig
from crm_mailer.leads.scope import TenantScope, tenant_scope
from crm_mailer.reconciliation.reprocess import reprocess
from crm_mailer.settings import Settings
from crm_mailer.views import OUTCOMES, list_messages

MESSAGE_COLUMNS = ("id", "received_at", "outcome", "reasons", "direction", "sender", "subject")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    messages = commands.add_parser("messages", help="received mail and what became of it")
    actions = messages.add_subparsers(dest="messages_command", required=True, metavar="ACTION")
    listing = add_action(actions, "list",
                         "list received mail, newest first, with its outcome and reasons",
                         _messages_list)
    listing.add_argument("--outcome", choices=OUTCOMES,
                         help="only mail filed, waiting in the queue (queued), ignored as "
                              "machine mail, rejected (refused) or expired")
    listing.add_argument("--limit", type=arguments.count, default=None, metavar="N",
                         help="at most N messages (default: all)")

    text = ("match mail kept as unprocessable again (after a fix): all of the tenant's, "
            "or the queue items named")
    parser = commands.add_parser("reprocess", help=text, description=text)
    add_tenant(parser)
    parser.add_argument("ids", nargs="*", type=arguments.identifier, metavar="ID",
                        help="pending item ids (default: every waiting unprocessable one)")
    parser.set_defaults(run=_reprocess)


async def _messages_list(args: argparse.Namespace, settings: Settings,
                         engine: AsyncEngine) -> int:
    async with reading(session_factory(engine)) as session:
        tenant = await tenant_scope(session, args.tenant)
        rows = await list_messages(session, tenant.id, outcome=args.outcome, limit=args.limit)
    print_rows(rows, args.format, MESSAGE_COLUMNS)
    return 0


async def _reprocess(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> int:
    config = IngestConfig.from_settings(settings)

    def service(session: AsyncSession, tenant: TenantScope) -> tuple[AsyncSession, TenantScope]:
        return session, tenant

    async with scoped(service, engine, args.tenant, write=True) as (session, tenant):
        report = await reprocess(session, tenant, config, args.ids)
    summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(report.items()))
    print(f"tenant '{args.tenant}': {summary or 'nothing to reprocess'}")
    return 0
