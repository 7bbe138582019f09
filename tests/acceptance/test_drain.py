"""SIGTERM in the middle of a load run (systemctl stop, a restart for an upgrade): what was
answered 250 is stored once, and every other client got an answer its relay retries on."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests import factories
from tests.acceptance.test_cli import ROOT, cli_env, crm_mailer, wait_for_port
from tests.acceptance.test_workers import send
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
        sent = threading.Semaphore(0)

        def one(index: int) -> tuple[str, int | str]:
            message_id = f"drain-{index}@xyz.de"
            try:
                return message_id, send(port, message_id)
            finally:
                sent.release()

        with ThreadPoolExecutor(8) as pool:
            results = pool.map(one, range(MESSAGES))
            for _ in range(SIGTERM_AFTER):
                sent.acquire()
            process.send_signal(signal.SIGTERM)  # sessions are mid-transaction now
            outcomes = dict(results)
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
    listed = crm_mailer(env, "messages", "list", "--tenant", "xyz", "--format", "json",
                        "--limit", "1000")
    assert listed.returncode == 0, listed.stderr
    stored = [json.loads(line)["message_id"] for line in listed.stdout.splitlines()]
    assert len(stored) == len(set(stored))  # never twice
    assert accepted <= set(stored)  # every 250 is stored
