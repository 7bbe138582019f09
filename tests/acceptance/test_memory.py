"""Peak memory of the daemon for one big message: at most 3x its size (issue 7).

Measured as a person would: `crm-mailer serve` in its own process, the growth of its
VmHWM (peak resident memory) while a 20 MB message goes in, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import smtplib
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests import factories
from tests.acceptance.test_cli import cli_env, crm_mailer, serving


def peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def big_message(payload_bytes: int) -> bytes:
    message = EmailMessage()
    message["From"] = "Alice <alice@xyz.de>"
    message["To"] = "bob@acme.com"
    message["Subject"] = "XYZ Lead 11111 Pläne"
    message["Message-ID"] = "<big@xyz.de>"
    message.set_content("Hallo Bob,\nanbei die Pläne.\n")
    message.add_attachment(os.urandom(payload_bytes), maintype="application", subtype="pdf",
                           filename="Pläne.pdf")
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_one_big_message_raises_peak_memory_by_at_most_three_times_its_size(
        database_url: str, tmp_path: Path) -> None:
    url = database_url.replace("+aiosqlite", "").replace("+asyncpg", "")
    env = cli_env(tmp_path, CRM_MAILER_DATABASE_URL=url, CRM_MAILER_LOG_LEVEL="warning")
    directory = tmp_path / "directory.json"
    directory.write_text(factories.dumps(factories.directory()))
    assert crm_mailer(env, "import", str(directory)).returncode == 0
    with serving(env) as (server, port):
        with smtplib.SMTP("127.0.0.1", port) as client:  # warm up: code paths, pools
            client.sendmail("alice@xyz.de", ["crm@xyz.hq.example"], factories.mail())
        before = peak_kib(server.pid)
        raw = big_message(15 * 1024 * 1024)
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
            client.sendmail("alice@xyz.de", ["crm@xyz.hq.example"], raw)
        growth = (peak_kib(server.pid) - before) * 1024
    print(f"peak grew by {growth / len(raw):.2f}x of {len(raw)} bytes")
    assert growth <= 3 * len(raw), f"{growth / len(raw):.2f}x"
