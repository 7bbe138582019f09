"""`crm-mailer explain` (issue 9, rule 10): the whole pipeline on a file, nothing stored,
on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.acceptance.test_cli import crm_mailer
from tests.acceptance.test_leads_cli import fails, ok

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "eml"
STEPS = ["sender", "contact", "machine", "company", "number", "thread", "name", "single_lead",
         "decide"]


@pytest.fixture
def env(cli: dict[str, str]) -> dict[str, str]:
    assert crm_mailer(cli, "import", str(FIXTURES / "directory.json")).returncode == 0
    return cli


def test_explain_prints_every_steps_evidence_and_stores_nothing(env: dict[str, str]) -> None:
    shown = ok(env, "explain", str(FIXTURES / "lead_name_in_subject.eml"))
    head, *steps = shown.splitlines()
    assert head == "tenant 'xyz': filed - filed on lead 11111, contact bob@acme.com"
    assert [line.split()[0] for line in steps] == STEPS
    assert "website-relaunch" in steps[6].lower()  # the name step names the lead it found
    assert ok(env, "history", "list", "--format", "json") == ""
    assert ok(env, "pending", "list", "--format", "json") == ""


def test_explain_as_json_says_why_a_mail_waits(env: dict[str, str]) -> None:
    explained = json.loads(ok(env, "explain", "--format", "json",
                              str(FIXTURES / "no_number.eml")))
    assert explained["outcome"] == "queued"
    assert explained["summary"] == "queued for a person: no_number"
    assert [step["step"] for step in explained["evidence"]] == STEPS
    single = explained["evidence"][7]
    assert (single["found"], single["why"]) == ("lead 11111",
                                                "the only open lead of company acme")


def test_explain_shows_a_refused_sender(env: dict[str, str], tmp_path: Path) -> None:
    mail = tmp_path / "spoof.eml"
    mail.write_bytes(b"From: mallory@evil.example\r\nTo: bob@acme.com\r\n"
                     b"Subject: Lead 11111\r\nMessage-ID: <x@evil.example>\r\n\r\nhi\r\n")
    shown = ok(env, "explain", str(mail))
    assert shown.splitlines()[0] == "tenant 'xyz': refused - unknown sender"


def test_explain_says_an_auto_reply_carrying_the_number_is_ignored(env: dict[str, str]) -> None:
    shown = ok(env, "explain", str(FIXTURES / "conversation" / "machine" / "outlook_ooo_de.eml"))
    head, *steps = shown.splitlines()
    assert head == ("tenant 'xyz': ignored - machine mail (auto_reply, Auto-Submitted: "
                    "auto-generated): kept, neither filed nor queued")
    assert [line.split()[0] for line in steps] == ["sender", "contact", "machine", "decide"]
    null_sender = ok(env, "explain", "--envelope-sender", "",
                     str(FIXTURES / "conversation" / "machine" / "outlook_ooo_de.eml"))
    assert null_sender.startswith("tenant 'xyz': discarded - machine mail (delivery_report) "
                                  "from a sender the tenant does not take: From acme.com not "
                                  "proven")


def test_explain_for_an_unknown_tenant_is_one_clear_line(env: dict[str, str]) -> None:
    assert "no tenant 'nobody'" in fails(env, "explain", "--tenant", "nobody",
                                         str(FIXTURES / "no_number.eml"))
