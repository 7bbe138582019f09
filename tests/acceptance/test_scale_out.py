"""Scaling out (docs/operations.md): several `crm-mailer serve` hosts on one PostgreSQL.

The guarantee: the same message delivered to two hosts at the same moment (a relay that
retries on another MX after a timeout, two tenants' relays both copying it) is stored
once. Both hosts answer 250, since both copies are safe; one of them stores it, the other
finds the row and records a duplicate. Here two daemons get the same message, each on its
own connection, and the final dot of both DATA transfers is sent at the same instant.
"""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests import factories
from tests.acceptance.test_cli import ROOT, cli_env, crm_mailer, wait_for_port
from tests.pgcluster import free_port

MESSAGES = 20


@pytest.fixture
def two_hosts(tmp_path: Path, pg_database_url: str) -> Iterator[tuple[dict[str, str],
                                                                      list[int], Path]]:
    env = cli_env(tmp_path, CRM_MAILER_DATABASE_URL=pg_database_url)
    directory = tmp_path / "directory.json"
    directory.write_text(factories.dumps(factories.directory()))
    assert crm_mailer(env, "import", str(directory)).returncode == 0
    ports, processes = [free_port(), free_port()], []
    try:
        for number, port in enumerate(ports):
            log = (tmp_path / f"serve-{number}.log").open("w")  # read by nobody: not a pipe
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "crm_mailer", "serve", "--port", str(port)], env=env,
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, text=True))
            wait_for_port(port, processes[-1])
        yield env, ports, tmp_path
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            assert process.wait(timeout=60) == 0


def deliver_at_once(port: int, mail: bytes, barrier: threading.Barrier) -> int:
    """Send `mail` up to its last line, wait for the other host's client, then end DATA:
    the reply code."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo()
        assert client.mail("alice@xyz.de")[0] == 250
        assert client.rcpt("crm@xyz.hq.example")[0] == 250
        assert client.docmd("DATA")[0] == 354
        client.send(mail.rstrip(b"\r\n") + b"\r\n")
        barrier.wait(timeout=30)
        client.send(b".\r\n")
        code, _ = client.getreply()
        return code


@pytest.mark.postgres
def test_the_same_message_at_two_hosts_at_once_is_stored_once(
        two_hosts: tuple[dict[str, str], list[int], Path]) -> None:
    env, ports, logs = two_hosts
    with ThreadPoolExecutor(max_workers=2) as pool:
        for number in range(MESSAGES):
            mail = factories.mail(message_id=f"<twice-{number}@xyz.de>",
                                  subject=f"XYZ Lead 11111 copy {number}")
            barrier = threading.Barrier(2)
            codes = list(pool.map(deliver_at_once, ports, [mail] * 2, [barrier] * 2))
            assert codes == [250, 250], f"message {number}: {codes}"
    listed = crm_mailer(env, "history", "list", "--tenant", "xyz", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    ids = sorted(entry["message_id"] for entry in entries)
    assert ids == sorted(f"twice-{number}@xyz.de" for number in range(MESSAGES))
    received = crm_mailer(env, "messages", "list", "--tenant", "xyz", "--format", "json")
    assert received.returncode == 0, received.stderr
    assert len(received.stdout.splitlines()) == MESSAGES
    # Each message: one host stored it, the other found it there (stderr is line-buffered).
    outcomes = [json.loads(line).get("outcome") for log in sorted(logs.glob("serve-*.log"))
                for line in log.read_text().splitlines() if line.startswith("{")]
    assert outcomes.count("filed") == MESSAGES
    assert outcomes.count("duplicate") == MESSAGES
