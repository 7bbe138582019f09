"""SIGTERM in the middle of a load run (systemctl stop, a restart for an upgrade): what was
answered 250 is stored once, and every other client got an answer its relay retries on."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests import factories
from tests.acceptance.test_cli import ROOT, cli_env, crm_mailer, wait_for_port
from tests.acceptance.test_workers import load, stored_once
from tests.pgcluster import free_port

MESSAGES = 300
SIGTERM_AFTER = 60


@pytest.mark.parametrize("backend,workers", [
    ("sqlite", "1"),
    pytest.param("postgresql", "1", marks=pytest.mark.postgres),
    pytest.param("postgresql", "2", marks=pytest.mark.postgres),
])
def test_sigterm_during_load_loses_nothing_answered_250(
        tmp_path: Path, request: pytest.FixtureRequest, backend: str, workers: str) -> None:
    extra = {}
    if backend == "postgresql":
        extra["CRM_MAILER_DATABASE_URL"] = request.getfixturevalue("pg_database_url")
    env = cli_env(tmp_path, **extra)
    directory = tmp_path / "directory.json"
    directory.write_text(factories.dumps(factories.directory()))
    assert crm_mailer(env, "import", str(directory)).returncode == 0
    port = free_port()
    with (tmp_path / "serve.log").open("w") as log:  # a file: nobody reads a pipe here
        process = subprocess.Popen(
            [sys.executable, "-m", "crm_mailer", "serve", "--port", str(port),
             "--workers", workers], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=log, text=True)
    try:
        wait_for_port(port, process)
        # Sessions are mid-transaction when the signal comes.
        outcomes = load(port, MESSAGES, "drain", after=SIGTERM_AFTER,
                        interrupt=lambda: process.send_signal(signal.SIGTERM))
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()

    accepted = {m for m, outcome in outcomes.items() if outcome == 250}
    assert len(accepted) >= SIGTERM_AFTER - 8, outcomes  # the load was running
    assert len(accepted) < MESSAGES, "the drain refused nothing: SIGTERM came too late"
    # Everyone else was told to come back: 421 (shutting down) or no connection at all.
    assert {o for o in outcomes.values() if o != 250} <= {
        421, "SMTPServerDisconnected", "ConnectionRefusedError", "ConnectionResetError",
        "SMTPConnectError"}, outcomes
    assert accepted <= stored_once(env)  # every 250 is stored, and none twice
