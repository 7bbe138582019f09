"""Lead commands: leads, statuses and the pipeline. Each mirrors a call of crm_mailer.leads."""

from __future__ import annotations

import argparse
import sys
from contextlib import AbstractAsyncContextManager

from sqlalchemy.ext.asyncio import AsyncEngine

from crm_mailer.cli import arguments
from crm_mailer.cli.output import print_rows
from crm_mailer.cli.shared import Command, add_action, add_format, add_tenant, scoped
from crm_mailer.db.models import StatusKind
from crm_mailer.errors import Conflict, InvalidRequest
from crm_mailer.leads import UNSET, LeadLibrary, LeadView
from crm_mailer.leads.pipeline_sums import pipeline_sums, render_chart
from crm_mailer.leads.statuses import StatusLibrary, StatusView
from crm_mailer.settings import Settings

LEAD_COLUMNS = ("number", "name", "company", "contact", "status", "sales_action",
                "expected_volume", "project")
STATUS_COLUMNS = ("position", "name", "kind", "leads")

Args = argparse.Namespace


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    leads = commands.add_parser("leads", help="leads: list, show, create, update, ...")
    actions = leads.add_subparsers(dest="leads_command", required=True, metavar="ACTION")

    def action(name: str, run: Command, text: str,
               formats: bool = True) -> argparse.ArgumentParser:
        return add_action(actions, name, text, run, formats=() if formats else None)

    listing = action("list", _list, "list leads, by number")
    listing.add_argument("--status", help="only leads in this status")
    listing.add_argument("--company", metavar="KEY")
    listing.add_argument("--sales-action", metavar="NAME")
    for kind in StatusKind:
        listing.add_argument(f"--{kind.value}", dest="kinds", action="append_const",
                             const=kind, help=f"only {kind.value} leads (combinable)")

    action("show", _show, "show one lead").add_argument("number", type=arguments.identifier)

    create = action("create", _create, "create a lead; prints its number")
    create.add_argument("--name", required=True)
    create.add_argument("--company", required=True, metavar="KEY")
    create.add_argument("--contact", metavar="EMAIL")
    create.add_argument("--status")
    create.add_argument("--sales-action", metavar="NAME")

    change = action("update", _update, "change one or many leads at once (all or none)")
    change.add_argument("numbers", type=arguments.identifier, nargs="+", metavar="NUMBER")
    contact = change.add_mutually_exclusive_group()
    contact.add_argument("--contact", metavar="EMAIL")
    contact.add_argument("--no-contact", action="store_true", help="clear the contact")
    sales_action = change.add_mutually_exclusive_group()
    sales_action.add_argument("--sales-action", metavar="NAME")
    sales_action.add_argument("--no-sales-action", action="store_true")
    change.add_argument("--status")
    change.add_argument("--name", help="rename (one lead only)")

    move = action("set-company", _set_company,
                  "move a lead to another company; clears its contact unless --contact")
    move.add_argument("number", type=arguments.identifier)
    move.add_argument("company", metavar="COMPANY_KEY")
    move.add_argument("--contact", metavar="EMAIL", help="a contact of the new company")

    revenue = action("revenue", _revenue, "set a planned net revenue; amount 0 removes it")
    revenue.add_argument("number", type=arguments.identifier)
    revenue.add_argument("--month", required=True, metavar="YYYY-MM", type=arguments.month)
    revenue.add_argument("--amount", required=True, metavar="AMOUNT", type=arguments.amount,
                         help="e.g. 1234.50")

    convert = action("convert", _convert, "create a project from the lead; prints its number")
    convert.add_argument("number", type=arguments.identifier)

    delete = action("delete", _delete, "delete a lead", formats=False)
    delete.add_argument("number", type=arguments.identifier)
    delete.add_argument("--detach-history", action="store_true",
                        help="keep mail filed on the lead in the company's history, without it")

    task = action("sales-task", _sales_task,
                  "the sales project's task for a company (book sales time there)")
    task.add_argument("company", metavar="COMPANY_KEY")

    text = "pipeline sums per status: open leads and their expected volume"
    pipeline = commands.add_parser(
        "pipeline", help=text,
        description=f"{text.capitalize()} (the sum of their planned net revenues), in "
                    "pipeline order; won and lost leads on request.")
    add_tenant(pipeline)
    add_format(pipeline, "chart")
    pipeline.add_argument("--include-won", action="store_true", help="include won leads")
    pipeline.add_argument("--include-lost", action="store_true", help="include lost leads")
    pipeline.add_argument("--sales-action", metavar="NAME")
    pipeline.add_argument("--company", metavar="KEY")
    pipeline.add_argument("--from", dest="month_from", metavar="YYYY-MM", type=arguments.month,
                          help="only planned revenues from this month")
    pipeline.add_argument("--to", dest="month_to", metavar="YYYY-MM", type=arguments.month,
                          help="only planned revenues up to this month")
    pipeline.set_defaults(run=_pipeline)

    statuses = commands.add_parser("statuses", help="lead statuses (Standardwerte)")
    status_actions = statuses.add_subparsers(dest="statuses_command", required=True,
                                             metavar="ACTION")

    def status_action(name: str, text: str) -> argparse.ArgumentParser:
        return add_action(status_actions, name, text, _statuses, status_action=name)

    status_action("list", "the statuses in pipeline order")
    add = status_action("add", "add a status")
    add.add_argument("name")
    add.add_argument("--kind", required=True, choices=[k.value for k in StatusKind])
    add.add_argument("--position", type=arguments.identifier, help="1-based; default: last")
    rename = status_action("rename", "rename a status")
    rename.add_argument("old")
    rename.add_argument("new")
    set_kind = status_action("set-kind", "make a status open, won or lost")
    set_kind.add_argument("name")
    set_kind.add_argument("kind", choices=[k.value for k in StatusKind])
    reorder = status_action("reorder", "put all statuses in the given order")
    reorder.add_argument("names", nargs="+", metavar="NAME")
    remove = status_action("delete", "delete a status; leads in it need --replacement")
    remove.add_argument("name")
    remove.add_argument("--replacement", metavar="STATUS")


def _library(engine: AsyncEngine, slug: str, *,
             write: bool) -> AbstractAsyncContextManager[LeadLibrary]:
    return scoped(LeadLibrary, engine, slug, write=write)


def _print_leads(leads: list[LeadView], fmt: str) -> None:
    print_rows([lead.as_json() for lead in leads], fmt, LEAD_COLUMNS)


async def _list(args: Args, settings: Settings, engine: AsyncEngine) -> int:
    async with _library(engine, args.tenant, write=False) as library:
        found = await library.list_leads(status=args.status, company=args.company,
                                         sales_action=args.sales_action, kinds=args.kinds)
    _print_leads(found, args.format)
    return 0


async def _show(args: Args, settings: Settings, engine: AsyncEngine) -> int:
    async with _library(engine, args.tenant, write=False) as library:
        lead = await library.get(args.number)
    if args.format == "json":
        _print_leads([lead], "json")
        return 0
    data = lead.as_json()
    revenues = data.pop("planned_revenues")
    width = max(map(len, data))
    for key, value in data.items():
        sys.stdout.write(f"{key.ljust(width)}  {'-' if value is None else value}\n")
    for revenue in revenues:
        sys.stdout.write(f"{'revenue'.ljust(width)}  {revenue['month']}  "
                         f"{revenue['amount']:>14}\n")
    return 0


async def _create(args: Args, settings: Settings, engine: AsyncEngine) -> int:
    async with _library(engine, args.tenant, write=True) as library:
        lead = await library.create(name=args.name, company=args.company, contact=args.contact,
                                    status=args.status, sales_action=args.sales_action)
    if args.format == "json":
        _print_leads([lead], "json")
    else:
        print(lead.number)
    return 0


async def _update(args: Args, settings: Settings, engine: AsyncEngine) -> int:
    contact = None if args.no_contact else (args.contact if args.contact else UNSET)
    action = None if args.no_sales_action else (args.sales_action or UNSET)
    if args.name is not None and len(args.numbers) != 1:
        raise InvalidRequest("--name renames one lead: give exactly one number")
    if args.name is None and contact is UNSET and action is UNSET and args.status is None:
        raise InvalidRequest("nothing to change: give --contact/--no-contact, "
                             "--sales-action/--no-sales-action, --status or --name")
    async with _library(engine, args.tenant, write=True) as library:
        if args.name is not None:
            changed = [await library.update(args.numbers[0], name=args.name, contact=contact,
                                            status=args.status or UNSET, sales_action=action)]
        else:
            changed = await library.update_many(args.numbers, contact=contact,
                                                status=args.status or UNSET,
                                                sales_action=action)
    _print_leads(changed, args.format)
    return 0


async def _set_company(args: Args, settings: Settings, engine: AsyncEngine) -> int:
    async with _library(engine, args.tenant, write=True) as library:
        lead = await library.set_company(args.number, args.company, contact=args.contact)
    _print_leads([lead], args.format)
    return 0


async def _revenue(args: Args, settings: Settings, engine: AsyncEngine) -> int:
    async with _library(engine, args.tenant, write=True) as library:
        lead = await library.set_revenue(args.number, args.month, args.amount)
    _print_leads([lead], args.format)
    return 0


async def _convert(args: Args, settings: Settings, engine: AsyncEngine) -> int:
    async with _library(engine, args.tenant, write=True) as library:
        project = await library.convert_to_project(args.number)
    if args.format == "json":
        print_rows([project.as_json()], "json", ())
    else:
        print(project.number)
    return 0


async def _delete(args: Args, settings: Settings, engine: AsyncEngine) -> int:
    async with _library(engine, args.tenant, write=True) as library:
        try:
            await library.delete(args.number, detach_history=args.detach_history)
        except Conflict as exc:
            raise Conflict(f"{exc}; --detach-history deletes it and keeps them") from None
    print(f"deleted lead {args.number}")
    return 0


async def _sales_task(args: Args, settings: Settings, engine: AsyncEngine) -> int:
    async with _library(engine, args.tenant, write=True) as library:
        task = await library.sales_task(args.company)
    print_rows([task.as_json()], args.format, ("project", "task_id", "task", "company"))
    return 0


async def _pipeline(args: Args, settings: Settings, engine: AsyncEngine) -> int:
    async with _library(engine, args.tenant, write=False) as library:
        rows = await pipeline_sums(library.session, library.tenant,
                                   include_won=args.include_won, include_lost=args.include_lost,
                                   sales_action=args.sales_action, company=args.company,
                                   month_from=args.month_from, month_to=args.month_to)
    if args.format == "chart":
        sys.stdout.write(render_chart(rows))
    else:
        print_rows([row.as_json() for row in rows], args.format,
                   ("status", "kind", "leads", "expected_volume"))
    return 0


async def _statuses(args: Args, settings: Settings, engine: AsyncEngine) -> int:
    write = args.status_action != "list"
    async with _library(engine, args.tenant, write=write) as library:
        statuses = StatusLibrary(library.session, library.tenant)
        views: list[StatusView]
        match args.status_action:
            case "add":
                views = await statuses.add(args.name, args.kind, args.position)
            case "rename":
                views = await statuses.rename(args.old, args.new)
            case "set-kind":
                views = await statuses.set_kind(args.name, args.kind)
            case "reorder":
                views = await statuses.reorder(args.names)
            case "delete":
                try:
                    views = await statuses.delete(args.name, args.replacement)
                except Conflict as exc:
                    raise Conflict(f"{exc} with --replacement STATUS") from None
            case _:
                views = await statuses.list_statuses()
    print_rows([view.as_json() for view in views], args.format, STATUS_COLUMNS)
    return 0
