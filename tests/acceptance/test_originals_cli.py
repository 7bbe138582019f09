"""The original of stored mail through the CLI: `history raw|attachment`, `pending
raw|attachment`, and the audit of moves, `history changes`; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import smtplib
from email.message import EmailMessage
from pathlib import Path

from tests import factories
from tests.acceptance.test_cli import serving
from tests.acceptance.test_leads_cli import fails, ok

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"  # binary, past the tree's cut
NOTES = "Preise für 2027\n".encode()


def with_attachments(subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Alice Adler <alice@xyz.de>"
    message["To"] = "bob@acme.com"
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '.')}@xyz.de>"
    message.set_content("Hallo Bob,\nanbei das Angebot.\n")
    message.add_attachment(PDF, maintype="application", subtype="pdf",
                           filename="Angebot Müller.pdf")
    message.add_attachment(NOTES, maintype="text", subtype="plain", filename="notes.txt")
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


def raw_output(env: dict[str, str], *args: str) -> bytes:
    import subprocess
    import sys

    from tests.acceptance.test_cli import ROOT
    result = subprocess.run([sys.executable, "-m", "crm_mailer", *args], env=env, cwd=ROOT,
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_original_and_its_attachments_of_filed_and_waiting_mail(
        env: dict[str, str], tmp_path: Path) -> None:
    filed_mail, waiting_mail = with_attachments("XYZ Lead 11111"), with_attachments("Angebot")
    with serving(env) as (_, port), smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("alice@xyz.de", ["crm@xyz.hq.example"], filed_mail)
        client.sendmail("alice@xyz.de", ["crm@xyz.hq.example"], waiting_mail)
    [entry] = [json.loads(line) for line in ok(env, "history", "list", "--format", "json")
               .splitlines()]
    [pending] = [json.loads(line) for line in ok(env, "pending", "list", "--format", "json")
                 .splitlines()]

    assert raw_output(env, "history", "raw", str(entry["id"])) == filed_mail
    ok(env, "pending", "raw", str(pending["id"]), "-o", str(tmp_path / "waiting.eml"))
    assert (tmp_path / "waiting.eml").read_bytes() == waiting_mail

    listed = [json.loads(line) for line in ok(
        env, "history", "attachment", str(entry["id"]), "--format", "json").splitlines()]
    assert listed == [
        {"index": 1, "filename": "Angebot Müller.pdf", "content_type": "application/pdf",
         "size": len(PDF)},
        {"index": 2, "filename": "notes.txt", "content_type": "text/plain",
         "size": len(NOTES)}]
    assert raw_output(env, "history", "attachment", str(entry["id"]), "1") == PDF
    assert raw_output(env, "history", "attachment", str(entry["id"]), "notes.txt") == NOTES
    ok(env, "pending", "attachment", str(pending["id"]), "Angebot Müller.pdf", "-o",
       str(tmp_path / "angebot.pdf"))
    assert (tmp_path / "angebot.pdf").read_bytes() == PDF

    assert fails(env, "history", "attachment", str(entry["id"]), "3") == (
        "crm-mailer: no attachment '3' (the attachments: 1 Angebot Müller.pdf, 2 notes.txt)")
    # A digit of another script is no index (int() takes Arabic-Indic digits, and
    # isdigit() is true of a superscript two).
    for which in ("²", "١"):
        assert fails(env, "history", "attachment", str(entry["id"]), which) == (
            f"crm-mailer: no attachment '{which}' (the attachments: 1 Angebot Müller.pdf, "
            "2 notes.txt)")
    assert fails(env, "history", "raw", str(entry["id"] + 100)) \
        == f"crm-mailer: no history entry {entry['id'] + 100}"
    assert fails(env, "pending", "raw", str(pending["id"] + 100)) \
        == f"crm-mailer: no pending mail {pending['id'] + 100}"


def test_history_changes_shows_who_moved_an_entry_and_filed_by_follows(
        env: dict[str, str]) -> None:
    ok(env, "leads", "create", "--name", "Wartung", "--company", "acme", "--status",
       "Erstkontakt")
    with serving(env) as (_, port), smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("alice@xyz.de", ["crm@xyz.hq.example"], factories.mail())
    [entry] = [json.loads(line) for line in ok(env, "history", "list", "--format", "json")
               .splitlines()]
    unchanged = ok(env, "history", "changes", str(entry["id"])).splitlines()
    assert unchanged[0].startswith(f"entry {entry['id']}: filed ") \
        and unchanged[0].endswith(" by crm-mailer")
    assert unchanged[-1] == "(0 rows)"

    leads = [json.loads(line)["number"] for line in ok(env, "leads", "list", "--format",
                                                        "json").splitlines()]
    [other] = [number for number in leads if number != 11111]
    ok(env, "history", "move", str(entry["id"]), "--lead", str(other), "--by", "maria")
    [change] = [json.loads(line) for line in ok(
        env, "history", "changes", str(entry["id"]), "--format", "json").splitlines()]
    assert change["changed_by"] == "maria"
    assert (change["before"]["lead"], change["after"]["lead"]) == (11111, other)
    table = ok(env, "history", "changes", str(entry["id"])).splitlines()
    assert table[0].endswith(" by maria")
    assert "lead 11111" in table[2] and f"lead {other}" in table[2]
