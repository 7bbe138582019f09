"""`crm-mailer ingest`: backfill from mbox, Maildir and .eml through the SMTP pipeline;
idempotent, with a progress bar on a terminal and a summary table at the end."""

from __future__ import annotations

import json
import mailbox
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import factories
from tests.acceptance.test_cli import ROOT, crm_mailer
from tests.acceptance.test_leads_cli import ok


def lf(raw: bytes) -> bytes:
    """As mail files keep it: LF line ends."""
    return raw.replace(b"\r\n", b"\n")


def mbox_of(path: Path, count: int) -> Path:
    box = mailbox.mbox(path)
    for number in range(count):
        subject = "Frage" if number % 4 == 0 else f"XYZ Lead 11111 ({number})"
        box.add(lf(factories.mail(message_id=f"<m{number}@xyz.de>", subject=subject)))
    box.close()
    return path


def summary(stdout: str) -> dict[str, int]:
    """The table's rows: outcome -> messages."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│") if c.strip()]
        if len(cells) == 2 and cells[1].isdigit():
            rows[cells[0]] = int(cells[1])
    return rows


def filed_count(env: dict[str, str]) -> int:
    return len(ok(env, "history", "list", "--format", "json").splitlines())


def test_mbox_maildir_and_eml_files_are_filed_once_even_when_run_twice(
        env: dict[str, str], tmp_path: Path) -> None:
    mbox = mbox_of(tmp_path / "sent.mbox", 8)
    maildir = mailbox.Maildir(tmp_path / "Maildir")
    maildir.add(lf(factories.mail(message_id="<maildir@xyz.de>")))
    machine = factories.mail(message_id="<auto@xyz.de>", headers={"Auto-Submitted": "auto-replied"})
    maildir.add(lf(machine))
    emls = tmp_path / "eml"
    (emls / "deep").mkdir(parents=True)
    (emls / "deep" / "one.eml").write_bytes(factories.mail(message_id="<eml@xyz.de>"))
    (emls / "two.eml").write_bytes(factories.mail(sender="mallory@evil.example",
                                                  message_id="<evil@xyz.de>"))
    paths = [str(mbox), str(tmp_path / "Maildir"), str(emls)]

    preview = crm_mailer(env, "ingest", "--host", "xyz.hq.example", "--dry-run", *paths)
    assert preview.returncode == 0, preview.stderr
    assert "would ingest 12 messages for xyz.hq.example (dry run" in preview.stdout
    assert summary(preview.stdout) == {"filed": 8, "queued": 2, "ignored": 1, "refused": 1,
                                       "duplicate": 0, "unprocessable": 0}
    assert filed_count(env) == 0  # the dry run stored nothing

    first = crm_mailer(env, "ingest", "--host", "xyz.hq.example", *paths)
    assert first.returncode == 0, first.stderr
    assert summary(first.stdout) == summary(preview.stdout)
    assert filed_count(env) == 8
    again = crm_mailer(env, "ingest", "--host", "XYZ.hq.example", *paths)
    assert summary(again.stdout) == {"filed": 0, "queued": 0, "ignored": 0, "refused": 1,
                                     "duplicate": 11, "unprocessable": 0}
    assert filed_count(env) == 8


def test_a_thousand_message_mbox_shows_a_progress_bar_and_files_each_once(
        tmp_path: Path) -> None:
    from tests.acceptance.test_cli import cli_env

    env = cli_env(tmp_path, CRM_MAILER_TENANT="xyz")
    directory = tmp_path / "directory.json"
    directory.write_text(factories.dumps(factories.directory()))
    assert crm_mailer(env, "import", str(directory)).returncode == 0
    mbox = mbox_of(tmp_path / "archive.mbox", 1000)
    if shutil.which("script") is None:
        pytest.fail("util-linux `script` is needed to run ingest on a terminal")
    command = f"{sys.executable} -m crm_mailer ingest --host xyz.hq.example {mbox}"
    env["CRM_MAILER_LOG_LEVEL"] = "warning"
    on_terminal = subprocess.run(["script", "-qec", command, "/dev/null"], env=env, cwd=ROOT,
                                 capture_output=True, text=True, timeout=600, check=False)
    assert on_terminal.returncode == 0, on_terminal.stdout
    assert "ingest" in on_terminal.stdout and "/1000" in on_terminal.stdout  # the bar: N/1000
    assert summary(on_terminal.stdout)["filed"] == 750
    assert summary(on_terminal.stdout)["queued"] == 250
    again = crm_mailer(env, "ingest", "--host", "xyz.hq.example", str(mbox))
    assert "/1000" not in again.stdout  # no terminal, no bar
    assert summary(again.stdout)["duplicate"] == 1000
    assert len([json.loads(line) for line in ok(env, "history", "list", "--format", "json")
                .splitlines()]) == 750


def test_a_host_no_tenant_has_is_one_clear_line(env: dict[str, str], tmp_path: Path) -> None:
    eml = tmp_path / "one.eml"
    eml.write_bytes(factories.mail())
    result = crm_mailer(env, "ingest", "--host", "nobody.example", str(eml))
    assert result.returncode == 1
    assert result.stderr.strip() == "crm-mailer: no tenant has the host 'nobody.example'"
    missing = crm_mailer(env, "ingest", "--host", "xyz.hq.example", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "no such file or folder" in missing.stderr
