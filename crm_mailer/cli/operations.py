"""Operator commands: db, import, tenants, and the history and pending read-outs."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from crm_mailer.cli import arguments, audit, originals
from crm_mailer.cli.output import SafeOutput, cell, evidence_lines, print_rows
from crm_mailer.cli.shared import add_action, add_by, scoped
from crm_mailer.db import migrate, repositories
from crm_mailer.db.engine import reading, session_factory, writing
from crm_mailer.db.models import ReviewPolicy, Tenant, TenantHost
from crm_mailer.directory.importer import import_directory
from crm_mailer.directory.spec import parse_directory
from crm_mailer.errors import CrmMailerError, NotFound
from crm_mailer.leads.scope import tenant_scope
from crm_mailer.mail.freemail import free_mail_domains
from crm_mailer.mail.proof import SenderPolicy
from crm_mailer.reconciliation import ReconciliationQueue, expire_pending
from crm_mailer.settings import Settings
from crm_mailer.views import list_history
from crm_mailer.wording import counted

log = structlog.get_logger("crm_mailer.cli")

HISTORY_COLUMNS = ("id", "sent_at", "direction", "sender", "company", "contact", "lead",
                   "project", "subject")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("upgrade", help="apply all migrations").set_defaults(
        run=_db_upgrade, schema=False)
    db_commands.add_parser("current", help="show the schema revision").set_defaults(
        run=_db_current, schema=False)

    importer = commands.add_parser(
        "import", help="load tenants and their directory from JSON",
        description="Load tenants and their directory from JSON. Prints what was created, "
                    "changed, left alone and in conflict: a value changed in the CRM since the "
                    "last import is kept and reported, unless --overwrite.")
    importer.add_argument("file", type=Path, metavar="FILE.json")
    importer.add_argument("--dry-run", action="store_true",
                          help="print what the import would do and store nothing")
    importer.add_argument("--overwrite", action="store_true",
                          help="the file's values replace values changed in the CRM since the "
                               "last import, wherever the lead library's rules allow them")
    importer.set_defaults(run=_import)

    history = commands.add_parser("history", help="filed contact-history entries")
    history_actions = history.add_subparsers(dest="history_command", required=True,
                                             metavar="ACTION")
    listing = add_action(history_actions, "list", "list filed contact-history entries",
                         _history_list)
    listing.add_argument("--lead", type=arguments.identifier, metavar="NUMBER",
                         help="only mail on this lead")
    listing.add_argument("--project", type=arguments.identifier, metavar="NUMBER",
                         help="only mail on this project (and on the lead it came from)")
    listing.add_argument("--limit", type=arguments.count, default=None, metavar="N")
    move = add_action(history_actions, "move",
                      "correct a filed entry: another lead, project or contact", _history_move,
                      item="id")
    add_record_choice(move)
    add_by(move)
    originals.register(history_actions, "history entry")
    audit.register(history_actions)

    pending = commands.add_parser("pending", help="mail waiting for confirmation")
    pending_actions = pending.add_subparsers(dest="pending_command", required=True,
                                             metavar="ACTION")
    listing = add_action(pending_actions, "list", "list mail waiting for confirmation",
                         _pending_list)
    listing.add_argument("--all", action="store_true",
                         help="include confirmed, rejected and expired items")
    listing.add_argument("--limit", type=arguments.count, default=None, metavar="N")
    listing.add_argument("--offset", type=arguments.count, default=0, metavar="N")
    add_action(pending_actions, "show", "one item with reasons and candidates", _pending_show,
               item="id")
    confirm = add_action(pending_actions, "confirm",
                         "file the mail: as suggested, or with corrections", _pending_confirm,
                         item="id")
    add_record_choice(confirm)
    confirm.add_argument("--company", metavar="KEY")
    add_by(confirm)
    reject = add_action(pending_actions, "reject", "do not file the mail (kept for audit)",
                        _pending_reject, item="id")
    reject.add_argument("--reason", metavar="TEXT")
    add_by(reject)
    add_action(pending_actions, "rematch", "match waiting mail again after directory changes",
               _pending_rematch, formats=None)
    expire = add_action(pending_actions, "expire", "mark old waiting mail expired (all tenants)",
                        _pending_expire, tenant=False, formats=None)
    expire.add_argument("--older-than", type=arguments.days, metavar="DAYS",
                        help="default: config pending_max_age_days")
    originals.register(pending_actions, "pending mail")

    tenants = commands.add_parser("tenants", help="tenants, their review and sender policies")
    tenant_actions = tenants.add_subparsers(dest="tenants_command", required=True,
                                            metavar="ACTION")
    add_action(tenant_actions, "list", "list tenants", _tenants_list, tenant=False)
    review = add_action(tenant_actions, "set-review",
                        "which new mail a person checks: uncertain (default) or all",
                        _tenants_review, formats=None)
    review.add_argument("policy", choices=[p.value for p in ReviewPolicy])
    sender_policy = add_action(
        tenant_actions, "set-sender-policy",
        "what proves the From: aligned (default: envelope, DKIM or trusted DMARC), "
        "dkim (DKIM or trusted DMARC only) or header (no proof; weaker)",
        _tenants_sender_policy, formats=None)
    sender_policy.add_argument("policy", choices=[p.value for p in SenderPolicy])


def add_record_choice(parser: argparse.ArgumentParser) -> None:
    record = parser.add_mutually_exclusive_group()
    record.add_argument("--lead", type=arguments.identifier, metavar="NUMBER")
    record.add_argument("--project", type=arguments.identifier, metavar="NUMBER")
    parser.add_argument("--contact", metavar="EMAIL")

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
    specs = parse_directory(text, free_mail=free_mail_domains(settings.free_mail_domains))
    async with writing(session_factory(engine)) as session:
        report = await import_directory(session, specs, overwrite=args.overwrite)
        if args.dry_run:
            await session.rollback()
    out = SafeOutput(sys.stdout)
    for line in report.lines:
        out.write(f"{line}\n")
    if args.dry_run:
        out.write(f"would import {counted(len(specs), 'tenant')}: {report.summary()} "
                  "(dry run: nothing was stored)\n")
        return 0
    out.write(f"imported {counted(len(specs), 'tenant')}: {report.summary()}\n")
    # Directory changes may make waiting mail certain: match it again, tenant by tenant.
    for spec in specs:
        async with writing(session_factory(engine)) as session:
            queue = ReconciliationQueue(session, await tenant_scope(session, spec.slug))
            rematched = await queue.rematch()
        if rematched.filed or rematched.updated:
            print(f"tenant '{spec.slug}': waiting mail {rematched.summary()}")
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
    print_rows(rows, args.format, HISTORY_COLUMNS)
    return 0


PENDING_COLUMNS = ("id", "sent_at", "state", "sender", "reasons", "subject")


async def _pending_list(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> int:
    async with _queue(engine, args.tenant, write=False) as queue:
        rows = await queue.list_pending(include_resolved=args.all, limit=args.limit,
                                        offset=args.offset)
    print_rows(rows, args.format, PENDING_COLUMNS + (("resolved_by",) if args.all else ()))
    return 0


def _queue(engine: AsyncEngine, slug: str, *,
           write: bool) -> AbstractAsyncContextManager[ReconciliationQueue]:
    return scoped(ReconciliationQueue, engine, slug, write=write)


async def _pending_show(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> int:
    async with _queue(engine, args.tenant, write=False) as queue:
        item = await queue.show(args.id)
    if args.format == "json":
        print_rows([item], "json", ())
        return 0
    out = SafeOutput(sys.stdout)
    for key in ("id", "state", "sent_at", "direction", "sender", "to", "cc", "subject"):
        out.write(f"{key:<11} {cell(item[key])}\n")
    if item["resolved_by"]:
        out.write(f"{'resolved':<11} {item['resolved_by']} at {item['resolved_at']}"
                  f"{' (' + item['note'] + ')' if item['note'] else ''}\n")
    for attachment in item["attachments"]:
        out.write(f"{'attachment':<11} {attachment['filename'] or '(unnamed)'} "
                  f"[{attachment['content_type']}, {attachment['size']} bytes]\n")
    out.write("\nwhy it waits:\n")
    for reason in item["reasons"]:
        out.write(f"  - {reason['text']} ({reason['code']})\n")
    if item["evidence"]:
        out.write("\nhow it was matched:\n")
        for line in evidence_lines(item["evidence"]):
            out.write(line + "\n")
    out.write("\ncandidates:\n")
    for kind, noun, label in (("leads", "lead", "number"), ("projects", "project", "number"),
                              ("contacts", "contact", "email"),
                              ("companies", "company", "key")):
        for candidate in item["candidates"][kind]:
            out.write(f"  {noun:<8} {candidate[label]!s:<28} {candidate['why']}\n")
    if item["filed"]:
        filed = item["filed"]
        out.write(f"\nfiled as entry {filed['id']}: company {filed['company']}, contact "
                  f"{filed['contact']}, lead {filed['lead']}, project {filed['project']}\n")
    out.write("\n" + item["preview"] + "\n")
    return 0


async def _pending_confirm(args: argparse.Namespace, settings: Settings,
                           engine: AsyncEngine) -> int:
    async with _queue(engine, args.tenant, write=True) as queue:
        entry = await queue.confirm(args.id, by=args.by, lead=args.lead, project=args.project,
                                    contact=args.contact, company=args.company)
    print_rows([entry], args.format, HISTORY_COLUMNS)
    return 0


async def _pending_reject(args: argparse.Namespace, settings: Settings,
                          engine: AsyncEngine) -> int:
    async with _queue(engine, args.tenant, write=True) as queue:
        item = await queue.reject(args.id, by=args.by, reason=args.reason)
    print_rows([item], args.format, (*PENDING_COLUMNS, "resolved_by", "note"))
    return 0


async def _pending_rematch(args: argparse.Namespace, settings: Settings,
                           engine: AsyncEngine) -> int:
    async with _queue(engine, args.tenant, write=True) as queue:
        report = await queue.rematch()
    print(f"tenant '{args.tenant}': waiting mail {report.summary()}")
    return 0


async def _pending_expire(args: argparse.Namespace, settings: Settings,
                          engine: AsyncEngine) -> int:
    days = settings.pending_max_age_days if args.older_than is None else args.older_than
    async with writing(session_factory(engine)) as session:
        count = await expire_pending(session, older_than=dt.timedelta(days=days))
    print(f"expired {counted(count, 'pending mail')} older than {counted(days, 'day')}")
    return 0


async def _history_move(args: argparse.Namespace, settings: Settings,
                        engine: AsyncEngine) -> int:
    async with _queue(engine, args.tenant, write=True) as queue:
        entry = await queue.move(args.id, by=args.by, lead=args.lead, project=args.project,
                                 contact=args.contact)
    print_rows([entry], args.format, HISTORY_COLUMNS)
    return 0


async def _tenants_list(args: argparse.Namespace, settings: Settings,
                        engine: AsyncEngine) -> int:
    async with reading(session_factory(engine)) as session:
        tenants = (await session.scalars(select(Tenant).order_by(Tenant.slug))).all()
        hosts: dict[int, list[str]] = {t.id: [] for t in tenants}
        for tenant_id, host in await session.execute(
                select(TenantHost.tenant_id, TenantHost.host).order_by(TenantHost.host)):
            hosts[tenant_id].append(host)
    print_rows([{"slug": t.slug, "name": t.name, "review": t.review.value,
                 "sender_policy": t.sender_policy.value, "hosts": hosts[t.id]}
                for t in tenants], args.format,
               ("slug", "name", "review", "sender_policy", "hosts"))
    return 0


async def _set_policy(args: argparse.Namespace, engine: AsyncEngine, name: str,
                      value: ReviewPolicy | SenderPolicy) -> int:
    """Set one of the tenant's policies (`review`, `sender_policy`)."""
    async with writing(session_factory(engine)) as session:
        setattr(await _tenant(session, args.tenant), name, value)
    print(f"tenant '{args.tenant}': {name} = {value}")
    return 0


async def _tenants_review(args: argparse.Namespace, settings: Settings,
                          engine: AsyncEngine) -> int:
    return await _set_policy(args, engine, "review", ReviewPolicy(args.policy))


async def _tenants_sender_policy(args: argparse.Namespace, settings: Settings,
                                 engine: AsyncEngine) -> int:
    return await _set_policy(args, engine, "sender_policy", SenderPolicy(args.policy))
