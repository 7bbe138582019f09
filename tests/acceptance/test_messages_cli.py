"""`crm-mailer messages list`: every received mail of a tenant and what became of it, from the
CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import smtplib
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.test_cli import crm_mailer, serving
from tests.acceptance.test_leads_cli import fails, ok

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "eml"
MACHINE = FIXTURES / "conversation" / "machine"


@pytest.fixture
def env(cli: dict[str, str]) -> dict[str, str]:
    assert crm_mailer(cli, "import", str(FIXTURES / "directory.json")).returncode == 0
    return cli


def listed(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in
            ok(env, "messages", "list", "--format", "json", *args).splitlines()]


def test_messages_list_shows_each_outcome_and_its_reasons(env: dict[str, str]) -> None:
    with serving(env) as (_, port), smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("alice@xyz.de", ["crm@xyz.hq.example"],
                        (FIXTURES / "outbound_bcc_lead.eml").read_bytes())  # filed
        client.sendmail("alice@xyz.de", ["crm@xyz.hq.example"],
                        (FIXTURES / "no_number.eml").read_bytes())  # queued
        client.sendmail("alice@xyz.de", ["crm@xyz.hq.example"],
                        (FIXTURES / "unknown_number.eml").read_bytes())  # queued, then refused
        client.sendmail("bob@acme.com", ["crm@xyz.hq.example"],
                        (MACHINE / "read_receipt.eml").read_bytes())  # ignored
        client.sendmail("", ["crm@xyz.hq.example"],
                        (MACHINE / "exchange_ndr.eml").read_bytes())  # discarded: not listed
        client.sendmail("bob@acme.com", ["crm@crm.other.example"],
                        (MACHINE / "read_receipt.eml").read_bytes())  # the other tenant's
    [unknown] = [item for item in listed(env, "--outcome", "queued")
                 if item["reasons"] == ["unknown_number"]]
    ok(env, "pending", "reject", str(unknown["pending"]), "--reason", "Werbung")

    messages = listed(env)
    assert [m["outcome"] for m in messages] == ["ignored", "refused", "queued", "filed"]
    assert [m["id"] for m in messages] == sorted((m["id"] for m in messages), reverse=True)
    ignored, refused, queued, filed = messages
    assert (ignored["reasons"], ignored["sender"], ignored["subject"]) == (
        ["delivery_report"], "bob@acme.com", "Gelesen: XYZ Lead 11111 Angebot Website-Relaunch")
    assert ignored["machine"]["header"] == "Content-Type"
    assert ignored["history"] is None and ignored["pending"] is None
    assert (refused["reasons"], refused["note"]) == (["unknown_number"], "Werbung")
    assert queued["reasons"] == ["no_number"] and queued["pending"] is not None
    assert (filed["reasons"], filed["machine"]) == ([], None) and filed["history"] is not None

    assert [m["id"] for m in listed(env, "--outcome", "ignored")] == [ignored["id"]]
    assert [m["id"] for m in listed(env, "--outcome", "refused")] == [refused["id"]]
    assert [m["id"] for m in listed(env, "--outcome", "filed")] == [filed["id"]]
    assert listed(env, "--outcome", "expired") == []
    assert [m["id"] for m in listed(env, "--limit", "2")] == [ignored["id"], refused["id"]]

    table = ok(env, "messages", "list").splitlines()
    assert table[0].split() == ["ID", "RECEIVED_AT", "OUTCOME", "REASONS", "DIRECTION",
                                "SENDER", "SUBJECT"]
    assert table[1].split()[2:4] == ["ignored", "delivery_report"]
    assert table[-1] == "(4 rows)"

    [theirs] = listed(env, "--tenant", "other")
    assert (theirs["outcome"], theirs["reasons"]) == ("ignored", ["delivery_report"])
    assert theirs["id"] not in {m["id"] for m in messages}


def test_messages_list_names_a_wrong_outcome_and_an_unknown_tenant(env: dict[str, str]) -> None:
    wrong = crm_mailer(env, "messages", "list", "--outcome", "spam")
    assert wrong.returncode == 2 and "invalid choice: 'spam'" in wrong.stderr
    assert "no tenant 'nobody'" in fails(env, "messages", "list", "--tenant", "nobody")
