"""Table output never passes a mail's control characters to the terminal (issue 7, finding 7)."""

from __future__ import annotations

import json
import smtplib
from pathlib import Path

from tests import factories
from tests.acceptance.test_cli import cli_env, crm_mailer, serving
from tests.acceptance.test_leads_cli import ok

HOSTILE = "\x1b]0;pwned\x07 \x1b[2J Lead 11111 \x9b31m \u202egnp.exe"
UNSAFE = ("\x1b", "\x07", "\x9b", "\u202e")


def test_tables_replace_control_characters_and_json_escapes_them(tmp_path: Path) -> None:
    env = cli_env(tmp_path, CRM_MAILER_TENANT="xyz")
    directory = tmp_path / "directory.json"
    directory.write_text(factories.dumps(factories.directory()))
    assert crm_mailer(env, "import", str(directory)).returncode == 0
    with serving(env) as (_, port), smtplib.SMTP("127.0.0.1", port) as client:
        for subject in (HOSTILE, HOSTILE.replace("11111", "")):  # filed, and queued
            client.sendmail("alice@xyz.de", ["crm@xyz.hq.example"],
                            factories.mail(subject=subject, body=HOSTILE))

    [queued] = [json.loads(line) for line in
                ok(env, "pending", "list", "--format", "json").splitlines()]
    assert queued["subject"] == HOSTILE.replace("11111", "")  # JSON keeps the text, escaped
    raw_json = ok(env, "history", "list", "--format", "json")
    assert not any(char in raw_json for char in UNSAFE)
    for output in (ok(env, "history", "list"), ok(env, "pending", "list"),
                   ok(env, "pending", "show", str(queued["id"]))):
        assert not any(char in output for char in UNSAFE), repr(output)
        assert "\ufffd]0;pwned" in output
