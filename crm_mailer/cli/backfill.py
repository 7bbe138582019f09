"""`crm-mailer ingest`: file existing mail (.eml, mbox, Maildir) through the pipeline."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_mailer import backfill
from crm_mailer.db.engine import session_factory
from crm_mailer.errors import CrmMailerError
from crm_mailer.ingest import IngestConfig
from crm_mailer.settings import Settings
from crm_mailer.wording import counted

log = structlog.get_logger("crm_mailer.backfill")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "file existing mail (.eml files, mbox files, Maildir folders) as SMTP would"
    parser = commands.add_parser(
        "ingest", help=text,
        description=f"{text[0].upper()}{text[1:]}: each message goes through the same "
                    "pipeline, as if it had come with crm@HOST as its recipient and its From "
                    "as the envelope sender. Safe to run again: what is stored already is "
                    "a duplicate, never a second entry.")
    parser.add_argument("--host", required=True, metavar="TENANT_HOST",
                        help="the tenant host the mail is filed for (crm@TENANT_HOST)")
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help=".eml file, mbox file, Maildir folder, or a folder of .eml files")
    parser.add_argument("--dry-run", action="store_true",
                        help="show what would happen and store nothing")
    parser.set_defaults(run=_ingest)


async def _ingest(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> int:
    for path in args.paths:
        if not path.exists():
            raise CrmMailerError(f"{path}: no such file or folder")
    config = IngestConfig.from_settings(settings)
    sessions = session_factory(engine)
    step = backfill.preview_one if args.dry_run else backfill.file_one
    host = args.host.strip().lower().rstrip(".")
    outcomes: Counter[str] = Counter()
    console = Console()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task("ingest", total=backfill.count(args.paths))
        for source in backfill.sources(args.paths):
            outcome = await step(sessions, host, source.raw, config)
            outcomes[outcome] += 1
            log.debug("backfill.message", source=source.where, outcome=outcome)
            progress.advance(task)
    console.print(f"{'would ingest' if args.dry_run else 'ingested'} "
                  f"{counted(sum(outcomes.values()), 'message')} for {host}"
                  + (" (dry run: nothing was stored)" if args.dry_run else ""),
                  soft_wrap=True, highlight=False)
    table = Table()
    table.add_column("outcome")
    table.add_column("messages", justify="right")
    for name, number in backfill.summary(outcomes):
        table.add_row(name, str(number))
    console.print(table)
    return 0
