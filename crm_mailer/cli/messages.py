"""Message commands: `reprocess` runs mail kept as unprocessable through the pipeline again."""

from __future__ import annotations

import argparse

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from crm_mailer.cli.shared import add_tenant, scoped
from crm_mailer.ingest import IngestConfig
from crm_mailer.leads.scope import TenantScope
from crm_mailer.reconciliation.reprocess import reprocess
from crm_mailer.settings import Settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = ("match mail kept as unprocessable again (after a fix): all of the tenant's, "
            "or the queue items named")
    parser = commands.add_parser("reprocess", help=text, description=text)
    add_tenant(parser)
    parser.add_argument("ids", nargs="*", type=int, metavar="ID",
                        help="pending item ids (default: every waiting unprocessable one)")
    parser.set_defaults(run=_reprocess)


async def _reprocess(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> int:
    config = IngestConfig.from_settings(settings)

    def service(session: AsyncSession, tenant: TenantScope) -> tuple[AsyncSession, TenantScope]:
        return session, tenant

    async with scoped(service, engine, args.tenant, write=True) as (session, tenant):
        report = await reprocess(session, tenant, config, args.ids)
    summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(report.items()))
    print(f"tenant '{args.tenant}': {summary or 'nothing to reprocess'}")
    return 0
