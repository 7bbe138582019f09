"""The installed `crm-mailer` command, as an operator uses it: serve, import, send, read out."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import factories
from tests.pgcluster import free_port

ROOT = Path(__file__).resolve().parents[2]


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_MAILER_")}
    env.update(HOME=str(tmp_path / "home"), XDG_STATE_HOME=str(tmp_path / "state"), **extra)
    env.pop("STATE_DIRECTORY", None)
    return env


def crm_mailer(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crm_mailer", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@contextlib.contextmanager
def serving(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`crm-mailer serve` in its own process on a free port, stopped when the block ends."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "crm_mailer", "serve", "--port", str(port)],
                               env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, process)
        yield process, port
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_for_port(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited: {process.stderr.read() if process.stderr else ''}")
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("serve did not start listening")


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[dict[str, str], int]]:
    """`crm-mailer serve` in a subprocess: embedded SQLite, or PostgreSQL by environment."""
    backend = request.param
    extra = {}
    if backend == "postgresql":
        url = request.getfixturevalue("pg_database_url")
        extra["CRM_MAILER_DATABASE_URL"] = url
    env = cli_env(tmp_path, **extra)
    if backend == "postgresql":
        assert crm_mailer(env, "db", "upgrade").returncode == 0
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "crm_mailer", "serve", "--port", str(port)],
                               env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        wait_for_port(port, process)
        yield env, port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=20) == 0
        finally:
            process.kill()


@pytest.mark.parametrize("served", ["sqlite", pytest.param("postgresql",
                                                           marks=pytest.mark.postgres)],
                         indirect=True)
def test_readme_example_end_to_end(served: tuple[dict[str, str], int], tmp_path: Path) -> None:
    env, port = served
    directory = tmp_path / "directory.json"
    directory.write_text(factories.dumps(factories.directory()))
    imported = crm_mailer(env, "import", str(directory))
    assert imported.returncode == 0, imported.stderr
    again = crm_mailer(env, "import", str(directory))
    assert again.stdout.strip().endswith("nothing changed"), again.stdout

    with smtplib.SMTP("127.0.0.1", port) as client:
        refused = client.sendmail("alice@xyz.de", ["bob@acme.com", "crm@xyz.hq.example"],
                                  factories.mail())
    assert list(refused) == ["bob@acme.com"]

    listed = crm_mailer(env, "history", "list", "--tenant", "xyz", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    [entry] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (entry["lead"], entry["contact"], entry["company"]) == (11111, "bob@acme.com", "acme")
    assert entry["subject"] == "XYZ Lead 11111" and entry["sender"] == "alice@xyz.de"
    assert entry["project"] is None and entry["participants"] == ["bob@acme.com"]
    assert entry["sent_at"].endswith("+00:00") and entry["body"] == "Hallo Bob,"
    assert not entry["message_id"].startswith("<")

    table = crm_mailer(env, "history", "list", "--tenant", "xyz")
    assert "11111" in table.stdout and "bob@acme.com" in table.stdout
    waiting = crm_mailer(env, "pending", "list", "--tenant", "xyz", "--format", "json")
    assert waiting.returncode == 0 and waiting.stdout == ""


@pytest.mark.parametrize(("choice", "runs_on"),
                         [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_serve_runs_on_the_configured_loop(tmp_path: Path, choice: str, runs_on: str) -> None:
    """uvloop is a dependency where it builds: by default serve must really run on it, and
    `event_loop = "asyncio"` must really leave it out (the benchmark compares the two)."""
    with serving(cli_env(tmp_path) | {"CRM_MAILER_EVENT_LOOP": choice}) as (process, _):
        pass
    assert process.stderr is not None
    [listening] = [json.loads(line) for line in process.stderr.read().splitlines()
                   if "smtp.listening" in line]
    assert listening["loop"] == runs_on, listening


def test_unknown_tenant_is_one_clear_line(tmp_path: Path) -> None:
    env = cli_env(tmp_path)  # a fresh embedded database: created and migrated on first use
    result = crm_mailer(env, "history", "list", "--tenant", "nope")
    assert result.returncode == 1
    assert result.stderr.strip() == "crm-mailer: no tenant 'nope'"


def test_invalid_config_names_the_key_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "crm-mailer.toml"
    config.write_text('listen_port = "twenty-five"\n')
    result = crm_mailer(cli_env(tmp_path), "--config", str(config), "db", "current")
    assert result.returncode == 2
    assert "listen_port" in result.stderr and len(result.stderr.strip().splitlines()) == 1

    env = cli_env(tmp_path, CRM_MAILER_MAX_MESSAGE_SIZE="lots")
    result = crm_mailer(env, "db", "current")
    assert result.returncode == 2 and "CRM_MAILER_MAX_MESSAGE_SIZE" in result.stderr

    config.write_text("listen_prot = 2525\n")
    result = crm_mailer(cli_env(tmp_path), "--config", str(config), "db", "current")
    assert result.returncode == 2 and "listen_prot" in result.stderr


def test_a_configured_sqlite_path_in_a_missing_directory_stops_serve_at_start(
        tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "crm.sqlite3"
    env = cli_env(tmp_path, CRM_MAILER_DATABASE_URL=f"sqlite:///{missing}")
    result = crm_mailer(env, "serve", "--port", "0")
    assert result.returncode == 2, result.stderr
    assert "does not exist" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not missing.parent.exists()


def test_import_error_names_tenant_and_record_and_changes_nothing(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    document = factories.directory()
    document["tenants"][0]["contacts"].append({"email": "eve@acme.com", "company": "nope"})
    bad = tmp_path / "bad.json"
    bad.write_text(factories.dumps(document))
    assert crm_mailer(env, "db", "upgrade").returncode == 0
    result = crm_mailer(env, "import", str(bad))
    assert result.returncode == 1
    assert "tenant 'xyz'" in result.stderr and "eve@acme.com" in result.stderr
    listed = crm_mailer(env, "history", "list", "--tenant", "xyz")
    assert listed.returncode == 1  # the tenant was not created either


@pytest.mark.postgres
def test_serve_refuses_an_unmigrated_postgresql_database(tmp_path: Path,
                                                         pg_empty_database_url: str) -> None:
    env = cli_env(tmp_path, CRM_MAILER_DATABASE_URL=pg_empty_database_url)
    result = crm_mailer(env, "serve", "--port", str(free_port()))
    assert result.returncode == 1 and "crm-mailer db upgrade" in result.stderr
    assert crm_mailer(env, "db", "current").returncode == 1
    assert crm_mailer(env, "db", "upgrade").returncode == 0
    assert crm_mailer(env, "db", "current").returncode == 0


def test_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    result = crm_mailer(cli_env(tmp_path, CRM_MAILER_DATABASE_URL=url), "db", "current")
    assert result.returncode == 1
    assert result.stderr.startswith("crm-mailer: the database is not available")
    assert "Traceback" not in result.stderr
