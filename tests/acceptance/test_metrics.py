"""The metrics endpoint of `serve`: Prometheus text on /metrics, /healthz and /readyz, on an
address of its own; with workers, the supervisor serves every worker's numbers summed."""

from __future__ import annotations

import re
import signal
import smtplib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests import factories
from tests.acceptance.test_cli import ROOT, cli_env, crm_mailer, wait_for_port
from tests.pgcluster import free_port


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def value(text: str, sample: str) -> float:
    """The value of one sample line, e.g. 'crm_mailer_messages_total{outcome="filed"}'."""
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    assert found, f"no {sample} in:\n{text}"
    return float(found.group(1))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_metrics_count_what_serve_did(tmp_path: Path, workers: str) -> None:
    metrics_port, smtp_port = free_port(), free_port()
    env = cli_env(tmp_path, CRM_MAILER_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
                  CRM_MAILER_TENANT="xyz")
    directory = tmp_path / "directory.json"
    directory.write_text(factories.dumps(factories.directory()))
    assert crm_mailer(env, "import", str(directory)).returncode == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "crm_mailer", "serve", "--port", str(smtp_port),
         "--workers", workers], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        wait_for_port(smtp_port, process)
        for subject in ("XYZ Lead 11111", "XYZ Lead 11111 again", "Frage"):
            with smtplib.SMTP("127.0.0.1", smtp_port) as client:  # a connection each
                client.sendmail("alice@xyz.de", ["crm@xyz.hq.example"],
                                factories.mail(subject=subject))
        with smtplib.SMTP("127.0.0.1", smtp_port) as client:
            client.ehlo()
            client.mail("alice@xyz.de")
            assert client.rcpt("crm@nobody.example")[0] == 550
            deadline = time.monotonic() + 30
            while True:  # the queue depth is read every 15 s, the first time at start
                status, text = get(metrics_port, "/metrics")
                if 'crm_mailer_pending_waiting{tenant="xyz"} 1.0' in text \
                        or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert value(text, "crm_mailer_connections") == 1  # this one, still open
        assert status == 200
        assert value(text, 'crm_mailer_messages_total{outcome="filed"}') == 2
        assert value(text, 'crm_mailer_messages_total{outcome="queued"}') == 1
        assert value(text, 'crm_mailer_replies_total{code="250",command="DATA"}') == 3
        assert value(text, 'crm_mailer_replies_total{code="250",command="RCPT"}') == 3
        assert value(text, 'crm_mailer_replies_total{code="550",command="RCPT"}') == 1
        assert value(text, "crm_mailer_processing_seconds_count") == 3
        assert value(text, 'crm_mailer_pending_waiting{tenant="xyz"}') == 1
        # The other outcomes: a re-delivery, an auto-reply, mail from a stranger.
        again = factories.mail(message_id="<twice@xyz.de>")
        auto = factories.mail(headers={"Auto-Submitted": "auto-replied"})
        stranger = factories.mail(sender="Mallory <mallory@fremd.example>")
        for sender, mail in (("alice@xyz.de", again), ("alice@xyz.de", again),
                             ("alice@xyz.de", auto), ("mallory@fremd.example", stranger)):
            with smtplib.SMTP("127.0.0.1", smtp_port) as client:
                client.ehlo()
                client.mail(sender)
                client.rcpt("crm@xyz.hq.example")
                client.data(mail)
        _, text = get(metrics_port, "/metrics")
        assert value(text, 'crm_mailer_messages_total{outcome="filed"}') == 3
        assert value(text, 'crm_mailer_messages_total{outcome="duplicate"}') == 1
        assert value(text, 'crm_mailer_messages_total{outcome="ignored"}') == 1
        assert value(text, 'crm_mailer_messages_total{outcome="refused"}') == 1
        assert value(text, 'crm_mailer_replies_total{code="550",command="DATA"}') == 1
        assert value(text, "crm_mailer_processing_seconds_count") == 7
        assert get(metrics_port, "/healthz") == (200, "ok\n")
        assert get(metrics_port, "/readyz") == (200, "ready\n")
        assert get(metrics_port, "/nope")[0] == 404
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


@pytest.mark.postgres
def test_readyz_says_503_while_the_database_is_away(tmp_path: Path) -> None:
    metrics_port, smtp_port = free_port(), free_port()
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/none"  # nothing listens there
    env = cli_env(tmp_path, CRM_MAILER_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
                  CRM_MAILER_DATABASE_URL=url)
    process = subprocess.Popen(
        [sys.executable, "-m", "crm_mailer", "serve", "--port", str(smtp_port)], env=env,
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(smtp_port, process)
        assert get(metrics_port, "/healthz") == (200, "ok\n")
        assert get(metrics_port, "/readyz") == (503, "database not ready\n")
        with smtplib.SMTP("127.0.0.1", smtp_port) as client:
            client.ehlo()
            client.mail("alice@xyz.de")
            assert client.rcpt("crm@xyz.hq.example")[0] == 451
        _, text = get(metrics_port, "/metrics")
        assert value(text, 'crm_mailer_replies_total{code="451",command="RCPT"}') == 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


def test_a_bad_metrics_address_is_a_config_error(tmp_path: Path) -> None:
    result = crm_mailer(cli_env(tmp_path, CRM_MAILER_METRICS_LISTEN="9125"), "serve")
    assert result.returncode == 2
    assert result.stderr.strip() == ("crm-mailer: config key 'metrics_listen': '9125' is not "
                                     "HOST:PORT (e.g. 127.0.0.1:9125)")
