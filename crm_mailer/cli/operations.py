"""Operator commands: serve, db, import, and the history and pending read-outs."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from crm_mailer.cli.output import print_rows
from crm_mailer.cli.shared import add_format, add_tenant
from crm_mailer.db import migrate, repositories
from crm_mailer.db.engine import reading, session_factory, writing
from crm_mailer.db.models import Tenant
from crm_mailer.directory.importer import ImportReport, import_tenant
from crm_mailer.directory.spec import parse_directory
from crm_mailer.errors import CrmMailerError, NotFound
from crm_mailer.settings import Settings
from crm_mailer.smtp.server import SmtpServer
from crm_mailer.views import list_history, list_pending

log = structlog.get_logger("crm_mailer.cli")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="run the SMTP server")
    serve.add_argument("--host", help="listen address (config: listen_host)")
    serve.add_argument("--port", type=int, help="listen port (config: listen_port)")
    serve.set_defaults(run=_serve)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("upgrade", help="apply all migrations").set_defaults(
        run=_db_upgrade, schema=False)
    db_commands.add_parser("current", help="show the schema revision").set_defaults(
        run=_db_current, schema=False)

    importer = commands.add_parser("import", help="load tenants and their directory from JSON")
    importer.add_argument("file", type=Path, metavar="FILE.json")
    importer.set_defaults(run=_import)

    history = commands.add_parser("history", help="filed contact-history entries")
    history_actions = history.add_subparsers(dest="history_command", required=True,
                                             metavar="ACTION")
    listing = history_actions.add_parser("list", help="list filed contact-history entries")
    add_tenant(listing)
    add_format(listing)
    listing.add_argument("--lead", type=int, metavar="NUMBER", help="only mail on this lead")
    listing.add_argument("--project", type=int, metavar="NUMBER",
                         help="only mail on this project (and on the lead it came from)")
    listing.add_argument("--limit", type=int, default=None)
    listing.set_defaults(run=_history_list)

    pending = commands.add_parser("pending", help="mail waiting for confirmation")
    pending_actions = pending.add_subparsers(dest="pending_command", required=True,
                                             metavar="ACTION")
    listing = pending_actions.add_parser("list", help="list mail waiting for confirmation")
    add_tenant(listing)
    add_format(listing)
    listing.add_argument("--all", action="store_true",
                         help="include confirmed, rejected and expired items")
    listing.add_argument("--limit", type=int, default=None)
    listing.set_defaults(run=_pending_list)


async def _serve(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> int:
    server = SmtpServer(settings, session_factory(engine))
    try:
        await server.start(args.host, args.port)
    except OSError as exc:
        raise CrmMailerError(f"cannot listen on {args.host or settings.listen_host}:"
                             f"{args.port or settings.listen_port}: {exc.strerror}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("smtp.shutdown_requested")
    await server.stop()
    return 0


async def _db_upgrade(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> int:
    await migrate.upgrade(engine)
    print(f"database at revision {await migrate.current_revision(engine)}")
    return 0


async def _db_current(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> int:
    current, head = await migrate.current_revision(engine), migrate.head_revision()
    print(f"{current or 'empty'} (head: {head})")
    return 0 if current == head else 1


async def _import(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> int:
    try:
        text = args.file.read_bytes()
    except OSError as exc:
        raise CrmMailerError(f"cannot read {args.file}: {exc.strerror}") from None
    specs = parse_directory(text)
    report = ImportReport()
    async with writing(session_factory(engine)) as session:
        for spec in specs:
            await import_tenant(session, spec, report)
    print(f"imported {len(specs)} tenant(s): {report.summary()}")
    return 0


async def _tenant(session: AsyncSession, slug: str) -> Tenant:
    tenant = await repositories.tenant_by_slug(session, slug)
    if tenant is None:
        raise NotFound(f"no tenant '{slug}'")
    return tenant


async def _history_list(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> int:
    async with reading(session_factory(engine)) as session:
        rows = await list_history(session, (await _tenant(session, args.tenant)).id,
                                  limit=args.limit, lead=args.lead, project=args.project)
    print_rows(rows, args.format, ("id", "sent_at", "direction", "sender", "company",
                                    "contact", "lead", "project", "subject"))
    return 0


async def _pending_list(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> int:
    async with reading(session_factory(engine)) as session:
        rows = await list_pending(session, (await _tenant(session, args.tenant)).id,
                                  include_resolved=args.all, limit=args.limit)
    print_rows(rows, args.format, ("id", "sent_at", "state", "sender", "reasons", "subject"))
    return 0
