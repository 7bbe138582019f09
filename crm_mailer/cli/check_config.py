"""`crm-mailer check-config`: what an operator runs before (re)starting the service.

Each check prints one line, `ok` or `FAILED` with the reason; the command exits 1 if any
failed. Nothing is changed: the embedded database is not created or migrated here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from crm_mailer.db import migrate
from crm_mailer.db.engine import create_engine
from crm_mailer.db.failures import DATABASE_ERRORS
from crm_mailer.errors import ConfigError, SchemaOutdated
from crm_mailer.settings import CONFIG_ENV, Settings, load_settings, parse_listen
from crm_mailer.smtp.tls import server_context

_FAILURES: tuple[type[BaseException], ...] = (TimeoutError, *DATABASE_ERRORS)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'ok' if self.ok else 'FAILED':<7} {self.name}: {self.detail}"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = ("check the configuration, the database and its schema, the TLS files and the "
            "listen addresses (SMTP, metrics); exit 1 if anything is wrong")
    commands.add_parser("check-config", help=text, description=text[0].upper() + text[1:]
                        + ". Changes nothing.")


def run(config: str | None) -> int:
    """Run every check that can run and print it; 0 if all passed."""
    source = config or os.environ.get(CONFIG_ENV) or "no file: defaults and environment"
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        print(Check("configuration", False, str(exc)))
        return 1
    url = settings.effective_database_url
    fresh = settings.uses_embedded_database and not os.path.exists(
        url.removeprefix("sqlite+aiosqlite:///"))
    database = [Check("database", True, f"{url} (embedded; created on first start)")] \
        if fresh else asyncio.run(_database(url))
    checks = [Check("configuration", True, source), *database, _tls(settings),
              _listen(settings), _metrics(settings)]
    for check in checks:
        print(check)
    return 0 if all(check.ok for check in checks) else 1


async def _database(url: str) -> list[Check]:
    scheme, _, rest = url.partition("://")
    shown = f"{scheme}://{rest.rpartition('@')[2]}"  # never print a password
    engine = create_engine(url)
    try:
        reached = await _attempt(lambda: migrate.current_revision(engine))
        if isinstance(reached, Check):
            return [Check("database", False, f"{shown}: {reached.detail}")]
        schema = await _attempt(lambda: migrate.require_current(engine))
        return [Check("database", True, shown),
                schema if isinstance(schema, Check) else
                Check("schema", True, f"at {reached}, the newest this version ships")]
    finally:
        await engine.dispose()


async def _attempt(step: Callable[[], Awaitable[object]]) -> object:
    """The step's result, or a failed Check saying why (within 10 seconds)."""
    try:
        return await asyncio.wait_for(step(), 10)
    except SchemaOutdated as exc:
        return Check("schema", False, str(exc))
    except _FAILURES as exc:
        detail = (str(exc).splitlines() or [""])[0]
        return Check("database", False, f"{type(exc).__name__}: {detail}"[:300])


def _tls(settings: Settings) -> Check:
    if not settings.tls_cert_file:
        return Check("tls", True, "off (no tls_cert_file): STARTTLS is not offered")
    try:
        server_context(settings.tls_cert_file, settings.tls_key_file or "")
    except (OSError, ssl.SSLError) as exc:
        return Check("tls", False, f"{settings.tls_cert_file}: {exc}")
    return Check("tls", True, f"{settings.tls_cert_file} and its key load")


def _listen(settings: Settings) -> Check:
    return _address("listen", settings.listen_host, settings.listen_port)


def _metrics(settings: Settings) -> Check:
    if not settings.metrics_listen:
        return Check("metrics", True, "off (no metrics_listen)")
    host, port = parse_listen(settings.metrics_listen)  # checked when the config loaded
    if (host, port) == (settings.listen_host, settings.listen_port):
        return Check("metrics", False, f"{host}:{port} is the SMTP listen address")
    return _address("metrics", host, port)


def _address(name: str, host: str, port: int) -> Check:
    """The host must be an address of this machine; the port is not bound (the running
    service may hold it), only checked for a privilege it needs."""
    try:
        infos = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.bind((infos[0][4][0], 0))
    except OSError as exc:
        return Check(name, False, f"{host}: not an address of this machine ({exc})")
    note = " (below 1024: needs root or CAP_NET_BIND_SERVICE)" if 0 < port < 1024 else ""
    return Check(name, True, f"{host}:{port}{note}")
