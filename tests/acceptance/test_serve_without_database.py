"""`serve` starts while its PostgreSQL is down: 451 until it is back, then it files, unrestarted.

Each test has a throwaway cluster of its own, stopped and started here.
"""

from __future__ import annotations

import asyncio
import json
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from alembic import command

from crm_mailer.db import migrate
from crm_mailer.db.engine import create_engine
from tests import factories
from tests.acceptance.test_cli import ROOT, cli_env, crm_mailer, wait_for_port
from tests.pgcluster import PgCluster, free_port

pytestmark = pytest.mark.postgres


def rcpt(port: int) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo()
        client.mail("alice@xyz.de")
        return client.rcpt("crm@xyz.hq.example")


def until_accepted(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        if rcpt(port)[0] == 250:
            return
        time.sleep(0.2)
    raise AssertionError("the database came back, but serve kept answering 451")


def serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`crm-mailer serve` logging to the file `log`, which a test can read at any time."""
    port = free_port()
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "crm_mailer", "serve", "--port", str(port)],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    wait_for_port(port, process)
    return process, port


def events(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_serve_starts_without_the_database_and_files_once_it_is_back(
        cluster: PgCluster, tmp_path: Path) -> None:
    env = cli_env(tmp_path, CRM_MAILER_DATABASE_URL=cluster.url)
    assert crm_mailer(env, "db", "upgrade").returncode == 0
    directory = tmp_path / "directory.json"
    directory.write_text(factories.dumps(factories.directory()))
    assert crm_mailer(env, "import", str(directory)).returncode == 0
    cluster.stop()

    log = tmp_path / "serve.log"
    process, port = serve(env, log)
    try:
        code, text = rcpt(port)
        assert (code, text) == (451, b"4.3.0 Temporary storage failure, try again later")
        cluster.start()
        until_accepted(port, time.monotonic() + 60)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            refused = client.sendmail("alice@xyz.de", ["crm@xyz.hq.example"], factories.mail())
        assert refused == {}
    finally:
        stop(process)
    listed = crm_mailer(env, "history", "list", "--tenant", "xyz", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    [entry] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert entry["lead"] == 11111
    names = [e["event"] for e in events(log)]
    assert names.index("database.unavailable") < names.index("database.ready")


def test_a_database_that_comes_back_with_an_old_schema_keeps_the_451(
        cluster: PgCluster, tmp_path: Path) -> None:
    """The tables of the old schema would answer the recipient lookup (250): the schema is
    checked first, so nothing is stored into a schema this version does not know."""
    env = cli_env(tmp_path, CRM_MAILER_DATABASE_URL=cluster.url)
    assert crm_mailer(env, "db", "upgrade").returncode == 0
    directory = tmp_path / "directory.json"
    directory.write_text(factories.dumps(factories.directory()))
    assert crm_mailer(env, "import", str(directory)).returncode == 0
    asyncio.run(downgrade(cluster.url, "0006"))
    cluster.stop()
    log = tmp_path / "serve.log"
    process, port = serve(env, log)
    try:
        assert rcpt(port)[0] == 451
        cluster.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "database.schema_outdated" not in log.read_text():
            time.sleep(0.2)
        assert rcpt(port) == (451, b"4.3.0 Temporary storage failure, try again later")
    finally:
        stop(process)
    [outdated, *_] = [e for e in events(log) if e["event"] == "database.schema_outdated"]
    assert "crm-mailer db upgrade" in str(outdated["error"])
    assert "database.ready" not in [e["event"] for e in events(log)]


async def downgrade(url: str, revision: str) -> None:
    engine = create_engine(url)

    def run(connection: Any) -> None:
        config = migrate.alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    try:
        async with engine.begin() as connection:
            await connection.run_sync(run)
    finally:
        await engine.dispose()
