"""A real Postfix in front of `crm-mailer serve`, as in production: a mail client submits with
crm@ in Bcc, Postfix relays that copy through its transport map. While the database is
down, the daemon's 451 keeps the mail in Postfix's queue; once it is back, a flush files it,
exactly once.

Postfix runs as a private instance (tests/postfix.py) and needs root to start; the
database is a throwaway cluster of the test's own, stopped and started here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import factories
from tests.acceptance.test_cli import ROOT, cli_env, crm_mailer, wait_for_port
from tests.pgcluster import PgCluster, free_port
from tests.postfix import Postfix

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(os.geteuid() != 0, reason="a Postfix instance starts as root"),
]

CRM = "crm@xyz.hq.example"


@pytest.fixture
def served(cluster: PgCluster, tmp_path: Path) -> Iterator[tuple[dict[str, str], int]]:
    env = cli_env(tmp_path, CRM_MAILER_DATABASE_URL=cluster.url)
    assert crm_mailer(env, "db", "upgrade").returncode == 0
    directory = tmp_path / "directory.json"
    directory.write_text(factories.dumps(factories.directory()))
    assert crm_mailer(env, "import", str(directory)).returncode == 0
    port = free_port()
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "crm_mailer", "serve", "--port", str(port)],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_for_port(port, process)
        yield env, port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture
def postfix(served: tuple[dict[str, str], int]) -> Iterator[Postfix]:
    instance = Postfix([CRM], served[1])
    instance.start()
    yield instance
    instance.destroy()


def submitted(message_id: str) -> bytes:
    """A mail as a client hands it to sendmail: LF line ends, crm@ in Bcc."""
    raw = factories.mail(message_id=message_id)
    return raw.replace(b"To: bob@acme.com\r\n", f"To: bob@acme.com\r\nBcc: {CRM}\r\n".encode()) \
        .replace(b"\r\n", b"\n")


def filed(env: dict[str, str]) -> list[dict[str, object]]:
    listed = crm_mailer(env, "history", "list", "--tenant", "xyz", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    return [json.loads(line) for line in listed.stdout.splitlines()]


def test_postfix_relays_the_bcc_copy_and_queues_it_while_the_database_is_down(
        cluster: PgCluster, served: tuple[dict[str, str], int], postfix: Postfix) -> None:
    env, _ = served
    postfix.sendmail(submitted("<first@xyz.de>"), sender="alice@xyz.de")
    postfix.wait_for_log(r"to=<crm@xyz\.hq\.example>.*status=sent \(250 2\.0\.0 Message "
                         r"accepted and filed\)")
    [first] = filed(env)
    assert (first["lead"], first["contact"]) == (11111, "bob@acme.com")

    cluster.stop()
    postfix.sendmail(submitted("<second@xyz.de>"), sender="alice@xyz.de")
    deferred = postfix.wait_for_log(r"to=<crm@xyz\.hq\.example>.*status=deferred \((.*)\)")
    assert "451 4.3.0 Temporary storage failure" in deferred.group(1)
    assert "crm@xyz.hq.example" in postfix.queued()

    cluster.start()
    postfix.flush()
    postfix.wait_for_log(r"(?s)status=deferred.*to=<crm@xyz\.hq\.example>.*status=sent")
    assert "crm@xyz.hq.example" not in postfix.queued()
    entries = filed(env)
    assert sorted(e["id"] for e in entries) == [first["id"], max(e["id"] for e in entries)]
    assert len(entries) == 2  # the retried mail once, the first not again
