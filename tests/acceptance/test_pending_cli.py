"""The confirmation queue as an operator drives it from the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import smtplib
from pathlib import Path

import pytest

from tests import factories
from tests.acceptance.test_cli import crm_mailer, serving
from tests.acceptance.test_leads_cli import fails, ok


@pytest.fixture
def env(cli: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = cli
    directory = tmp_path / "directory.json"
    directory.write_text(factories.dumps(factories.directory()))
    assert crm_mailer(env, "import", str(directory)).returncode == 0
    return env


def test_queue_session_through_the_cli(env: dict[str, str], tmp_path: Path) -> None:
    with serving(env) as (_, port), smtplib.SMTP("127.0.0.1", port) as client:
        for subject, to in (("Lead 11111 und 20001", "bob@acme.com"),
                            ("Lead 11111", "dave@acme.com"),
                            ("privat", "bob@acme.com"),
                            ("Rückfrage", "bob@acme.com")):
            client.sendmail("alice@xyz.de", ["crm@xyz.hq.example"],
                            factories.mail(subject=subject, to=to))

    waiting = [json.loads(line) for line in ok(env, "pending", "list", "--format", "json")
               .splitlines()]
    several, no_contact, private, question = sorted(waiting, key=lambda item: item["id"])
    assert several["reasons"] == ["several_numbers"] and no_contact["reasons"] == ["no_contact"]

    shown = ok(env, "pending", "show", str(several["id"]))
    assert "the subject points to more than one lead or project" in shown
    assert "domain of bob@acme.com" in shown
    steps = shown.split("how it was matched:\n")[1].split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in steps] == [
        "sender", "contact", "machine", "company", "number", "thread", "name", "single_lead",
        "decide"]
    assert steps[4].split()[1:3] == ["lead", "11111,"]  # number: lead 11111, project 20001
    assert "the subject number decides" in steps[5]

    entry = json.loads(ok(env, "pending", "confirm", str(several["id"]), "--lead", "11111",
                          "--format", "json"))
    assert (entry["lead"], entry["contact"], entry["filed_by"]) == (11111, "bob@acme.com",
                                                                   "anna")
    assert "already confirmed by anna" in fails(env, "pending", "confirm", str(several["id"]),
                                                "--by", "ben")
    ok(env, "pending", "reject", str(private["id"]), "--reason", "privat", "--by", "ben")

    # The missing contact arrives with the next import: the waiting mail is filed.
    document = factories.directory()
    document["tenants"][0]["contacts"].append({"email": "dave@acme.com", "company": "acme"})
    directory = tmp_path / "directory2.json"
    directory.write_text(factories.dumps(document))
    assert "1 filed" in ok(env, "import", str(directory))
    left = ok(env, "pending", "list", "--format", "json").splitlines()
    assert [json.loads(line)["id"] for line in left] == [question["id"]]

    filed = [json.loads(line) for line in ok(env, "history", "list", "--format", "json")
             .splitlines()]
    assert sorted(e["subject"] for e in filed) == ["Lead 11111", "Lead 11111 und 20001"]
    moved = json.loads(ok(env, "history", "move", str(entry["id"]), "--project", "20001",
                          "--format", "json"))
    assert (moved["lead"], moved["project"]) == (None, 20001)

    ok(env, "tenants", "set-review", "all")
    assert json.loads(ok(env, "tenants", "list", "--format", "json"))["review"] == "all"
    # Expire: nothing is older than pending_max_age_days yet; with 0 days, only the mail
    # still waiting expires - decided mail keeps its decision.
    assert ok(env, "pending", "expire") == "expired 0 pending mail older than 30 days\n"
    assert ok(env, "pending", "expire", "--older-than", "0") == \
        "expired 1 pending mail older than 0 days\n"
    everything = [json.loads(line) for line in
                  ok(env, "pending", "list", "--all", "--format", "json").splitlines()]
    assert {i["id"]: (i["state"], i["resolved_by"]) for i in everything} == {
        several["id"]: ("confirmed", "anna"),
        no_contact["id"]: ("confirmed", "crm-mailer (rematch)"),
        private["id"]: ("rejected", "ben"),
        question["id"]: ("expired", "crm-mailer (expired)")}
    assert "no pending mail 999" in fails(env, "pending", "show", "999")
