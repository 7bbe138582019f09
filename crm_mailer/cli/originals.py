"""`history raw|attachment` and `pending raw|attachment`: the original of stored mail."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from crm_mailer import originals
from crm_mailer.cli.output import print_rows
from crm_mailer.cli.shared import add_action
from crm_mailer.db.engine import reading, session_factory
from crm_mailer.leads.scope import tenant_scope
from crm_mailer.settings import Settings


def register(actions: argparse._SubParsersAction[argparse.ArgumentParser], kind: str) -> None:
    """The two actions for `kind`: "history entry" or "pending mail"."""
    raw = add_action(actions, "raw", f"write the original message of a {kind} (.eml)", _raw,
                     formats=None, item="id", kind=kind)
    raw.add_argument("-o", "--output", type=Path, metavar="FILE",
                     help="write to FILE (default: standard output)")
    attachment = add_action(
        actions, "attachment",
        f"list the attachments of a {kind}, or write one by its index or file name",
        _attachment, item="id", kind=kind)
    attachment.add_argument("which", nargs="?", metavar="NAME|INDEX",
                            help="the attachment to write (default: list them)")
    attachment.add_argument("-o", "--output", type=Path, metavar="FILE",
                            help="write to FILE (default: standard output)")


def _write(content: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.buffer.write(content)
        sys.stdout.buffer.flush()
    else:
        output.write_bytes(content)


async def _raw(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> int:
    async with reading(session_factory(engine)) as session:
        tenant = await tenant_scope(session, args.tenant)
        read = originals.raw_of_entry if args.kind == "history entry" \
            else originals.raw_of_pending
        content = await read(session, tenant.id, args.id)
    _write(content, args.output)
    return 0


async def _attachment(args: argparse.Namespace, settings: Settings,
                      engine: AsyncEngine) -> int:
    async with reading(session_factory(engine)) as session:
        tenant = await tenant_scope(session, args.tenant)
        files = await originals.attachments_of(session, tenant.id, args.kind, args.id)
    if args.which is None:
        print_rows([f.as_json() for f in files], args.format,
                   ("index", "filename", "content_type", "size"))
        return 0
    _write(originals.choose(files, args.which).content, args.output)
    return 0
