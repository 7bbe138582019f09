"""The `crm-mailer` command.

Command output goes to stdout, logs to stderr. Exit codes: 0 done, 1 the operation
failed (one line says why; nothing was half-applied), 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from crm_mailer import __version__
from crm_mailer.cli import (
    backfill,
    check_config,
    explain,
    leads,
    messages,
    operations,
    serve,
)
from crm_mailer.db import migrate
from crm_mailer.db.engine import create_engine
from crm_mailer.db.failures import DATABASE_ERRORS, unavailable
from crm_mailer.errors import ConfigError, CrmMailerError
from crm_mailer.logging import configure_logging
from crm_mailer.settings import Settings, load_settings


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
    serve.register(commands)
    operations.register(commands)
    leads.register(commands)
    messages.register(commands)
    explain.register(commands)
    check_config.register(commands)
    backfill.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "check-config":  # reports a broken configuration as a failed check
        return check_config.run(args.config)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"crm-mailer: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
            return runner.run(_run(args, settings))
    except ConfigError as exc:
        print(f"crm-mailer: {exc}", file=sys.stderr)
        return 2
    except CrmMailerError as exc:
        print(f"crm-mailer: {exc}", file=sys.stderr)
        return 1
    except DATABASE_ERRORS as exc:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        what = "is not available" if unavailable(exc) else "refused the request"
        print(f"crm-mailer: the database {what} ({type(exc).__name__}: {detail})",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop `event_loop` names. "auto": uvloop where it is installed (Linux,
    macOS), since the daemon spends much of its time in socket I/O, which uvloop does in C;
    asyncio's own loop elsewhere. None means asyncio's own loop."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("event_loop = \"uvloop\", but uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    engine = create_engine(settings.effective_database_url,
                           create_directory=settings.uses_embedded_database)
    try:
        if getattr(args, "schema", True):
            await _ensure_schema(engine, settings)
        return int(await args.run(args, settings, engine))
    finally:
        await engine.dispose()


async def _ensure_schema(engine: AsyncEngine, settings: Settings) -> None:
    """The embedded default needs no set-up step; a configured database is upgraded by hand."""
    if settings.uses_embedded_database:
        await migrate.upgrade(engine)
    else:
        await migrate.require_current(engine)
