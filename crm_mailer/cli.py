"""The `crm-mailer` command: serve, db upgrade, import, history and pending read-outs.

Command output goes to stdout, logs to stderr. Exit codes: 0 done, 1 the operation
failed (the message says why), 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from crm_mailer import __version__
from crm_mailer.db import migrate, repositories
from crm_mailer.db.engine import create_engine, reading, session_factory, writing
from crm_mailer.db.models import Tenant
from crm_mailer.directory.importer import ImportReport, import_tenant
from crm_mailer.directory.spec import parse_directory
from crm_mailer.errors import ConfigError, CrmMailerError, NotFound
from crm_mailer.ingest import STORAGE_ERRORS
from crm_mailer.logging import configure_logging
from crm_mailer.settings import Settings, load_settings
from crm_mailer.smtp.server import SmtpServer
from crm_mailer.views import list_history, list_pending

log = structlog.get_logger("crm_mailer.cli")

Command = Callable[[argparse.Namespace, Settings, AsyncEngine], Awaitable[int]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crm-mailer",
        description="Files mail sent with crm@<tenant host> in BCC/CC into the CRM.",
        epilog="Every configuration key can be set as CRM_MAILER_<KEY>, "
               "e.g. CRM_MAILER_DATABASE_URL.",
    )
    parser.add_argument("--version", action="version", version=f"crm-mailer {__version__}")
    parser.add_argument("--config", metavar="PATH",
                        help="TOML configuration file (env: CRM_MAILER_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the SMTP server")
    serve.add_argument("--host", help="listen address (config: listen_host)")
    serve.add_argument("--port", type=int, help="listen port (config: listen_port)")
    serve.set_defaults(run=_serve)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("upgrade", help="apply all migrations").set_defaults(run=_db_upgrade)
    db_commands.add_parser("current", help="show the schema revision").set_defaults(
        run=_db_current)

    importer = commands.add_parser("import", help="load tenants and their directory from JSON")
    importer.add_argument("file", type=Path, metavar="FILE.json")
    importer.set_defaults(run=_import)

    for name, run, text in (("history", _history_list, "filed contact-history entries"),
                            ("pending", _pending_list, "mail waiting for confirmation")):
        group = commands.add_parser(name, help=text)
        actions = group.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")
        listing = actions.add_parser("list", help=f"list {text}")
        listing.add_argument("--tenant", required=True, metavar="SLUG")
        listing.add_argument("--format", choices=("table", "json"), default="table")
        listing.add_argument("--limit", type=int, default=None)
        if name == "pending":
            listing.add_argument("--all", action="store_true",
                                 help="include confirmed, rejected and expired items")
        listing.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"crm-mailer: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        return asyncio.run(_with_engine(args.run, args, settings))
    except ConfigError as exc:
        print(f"crm-mailer: {exc}", file=sys.stderr)
        return 2
    except CrmMailerError as exc:
        print(f"crm-mailer: {exc}", file=sys.stderr)
        return 1
    except STORAGE_ERRORS as exc:
        print(f"crm-mailer: the database is not available ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0] if str(exc) else ''})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _with_engine(run: Command, args: argparse.Namespace, settings: Settings) -> int:
    engine = create_engine(settings.effective_database_url)
    try:
        if args.command != "db":
            await _ensure_schema(engine, settings)
        return await run(args, settings, engine)
    finally:
        await engine.dispose()


async def _ensure_schema(engine: AsyncEngine, settings: Settings) -> None:
    """The embedded default needs no set-up step; a configured database is upgraded by hand."""
    if settings.uses_embedded_database:
        await migrate.upgrade(engine)
    else:
        await migrate.require_current(engine)


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
                                  limit=args.limit)
    _print_rows(rows, args.format, ("id", "sent_at", "direction", "sender", "company",
                                    "contact", "lead", "project", "subject"))
    return 0


async def _pending_list(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> int:
    async with reading(session_factory(engine)) as session:
        rows = await list_pending(session, (await _tenant(session, args.tenant)).id,
                                  include_resolved=args.all, limit=args.limit)
    _print_rows(rows, args.format, ("id", "sent_at", "state", "sender", "reasons", "subject"))
    return 0


def _print_rows(rows: list[dict[str, Any]], fmt: str, columns: Sequence[str]) -> None:
    out = sys.stdout
    if fmt == "json":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        return
    table = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [min(60, max([len(c), *(len(r[i]) for r in table)])) for i, c in enumerate(columns)]
    out.write("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()
              + "\n")
    for r in table:
        out.write("  ".join(v[:w].ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                  + "\n")
    out.write(f"({len(rows)} rows)\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return " ".join(str(value).split())


if __name__ == "__main__":
    raise SystemExit(main())
