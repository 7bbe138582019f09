"""Pieces every command group uses: common options and the command signature."""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from crm_mailer.cli import arguments
from crm_mailer.db.engine import reading, session_factory, writing
from crm_mailer.leads.scope import TenantScope, tenant_scope
from crm_mailer.settings import Settings

Service = TypeVar("Service")

Command = Callable[[argparse.Namespace, Settings, AsyncEngine], Awaitable[int]]


def add_tenant(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get("CRM_MAILER_TENANT")
    parser.add_argument("--tenant", metavar="SLUG", default=default, required=default is None,
                        help="the tenant (env: CRM_MAILER_TENANT)")


FORMAT_HELP = {"table": "for people (default)", "json": "one object per line",
               "chart": "a bar per status, and the total"}


def add_format(parser: argparse.ArgumentParser, *extra: str) -> None:
    formats = ("table", "json", *extra)
    parser.add_argument("--format", choices=formats, default="table",
                        help="; ".join(f"{name}: {FORMAT_HELP[name]}" for name in formats))


def add_by(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get("CRM_MAILER_USER") or os.environ.get("USER") or "operator"
    parser.add_argument("--by", metavar="USER", default=default,
                        help="who decides, for the audit (env: CRM_MAILER_USER, else $USER)")


def add_action(actions: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
               text: str, run: Command, *, tenant: bool = True, formats: tuple[str, ...] | None
               = (), item: str | None = None, **defaults: Any) -> argparse.ArgumentParser:
    """A sub-command: its help, --tenant, --format (None: no output format) and an ID."""
    parser = actions.add_parser(name, help=text, description=text)
    if tenant:
        add_tenant(parser)
    if formats is not None:
        add_format(parser, *formats)
    if item is not None:
        parser.add_argument(item, type=arguments.identifier, metavar=item.upper())
    parser.set_defaults(run=run, **defaults)
    return parser


@asynccontextmanager
async def scoped(service: Callable[[AsyncSession, TenantScope], Service], engine: AsyncEngine,
                 slug: str, *, write: bool) -> AsyncIterator[Service]:
    """A tenant's service (lead library, queue) on one session: a write transaction that
    commits on leaving, or a read-only one."""
    sessions = session_factory(engine)
    session: AsyncSession
    async with (writing(sessions) if write else reading(sessions)) as session:
        yield service(session, await tenant_scope(session, slug))
