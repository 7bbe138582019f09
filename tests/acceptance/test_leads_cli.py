"""The lead commands as an operator uses them, on the embedded SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import factories
from tests.acceptance.test_cli import crm_mailer


@pytest.fixture
def env(cli: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = cli
    document = factories.directory()
    document["tenants"][0]["companies"].append(
        {"key": "globex", "name": "Globex Ltd", "domains": ["globex.example"]})
    directory = tmp_path / "directory.json"
    directory.write_text(factories.dumps(document))
    assert crm_mailer(env, "import", str(directory)).returncode == 0
    return env


def ok(env: dict[str, str], *args: str) -> str:
    result = crm_mailer(env, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def fails(env: dict[str, str], *args: str) -> str:
    result = crm_mailer(env, *args)
    assert result.returncode == 1, result.stdout
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    return result.stderr.strip()


def test_lead_session_through_the_cli(env: dict[str, str]) -> None:
    number = ok(env, "leads", "create", "--name", "Wartung 2027", "--company", "acme",
                "--contact", "bob@acme.com").strip()
    assert number == "11112"
    ok(env, "leads", "revenue", number, "--month", "2027-01", "--amount", "1234.50")
    ok(env, "leads", "revenue", number, "--month", "2027-02", "--amount", "0.25")
    [lead] = map(json.loads, ok(env, "leads", "show", number, "--format", "json").splitlines())
    assert lead["expected_volume"] == "1234.75" and lead["contact"] == "bob@acme.com"

    # Bulk update: one bad lead (unknown) changes nothing, then all at once.
    assert "no lead 99999" in fails(env, "leads", "update", "11111", number, "99999",
                                    "--status", "Gewonnen")
    updated = ok(env, "leads", "update", "11111", number, "--status", "Gewonnen",
                 "--no-contact", "--format", "json")
    assert [(row["status"], row["contact"]) for row in map(json.loads, updated.splitlines())] \
        == [("Gewonnen", None)] * 2

    rows = [json.loads(line) for line in
            ok(env, "pipeline", "--include-won", "--format", "json").splitlines()]
    assert rows == [
        {"status": "Erstkontakt", "kind": "open", "leads": 0, "expected_volume": "0.00"},
        {"status": "Gewonnen", "kind": "won", "leads": 2, "expected_volume": "13234.75"}]
    chart = ok(env, "pipeline", "--include-won", "--include-lost", "--format", "chart")
    assert chart.splitlines() == [
        "Erstkontakt  ········································       0.00  (0 leads)",
        "Gewonnen     ████████████████████████████████████████  13,234.75  (2 leads)",
        "Verloren     ········································       0.00  (0 leads)",
        "total                                                  13,234.75  (2 leads)"]

    assert ok(env, "leads", "convert", "11111").strip() == "20002"
    assert fails(env, "leads", "convert", "11111") == \
        "crm-mailer: lead 11111 was already converted to project 20002"

    # The lead's own company with a contact sets it; another company clears it.
    same = json.loads(ok(env, "leads", "set-company", number, "acme", "--contact",
                         "bob@acme.com", "--format", "json"))
    assert (same["number"], same["company"], same["contact"]) == (int(number), "acme",
                                                                  "bob@acme.com")
    moved = json.loads(ok(env, "leads", "set-company", number, "globex", "--format", "json"))
    assert (moved["company"], moved["contact"]) == ("globex", None)
    [shown] = map(json.loads, ok(env, "leads", "show", number, "--format", "json").splitlines())
    assert (shown["company"], shown["contact"]) == ("globex", None)
    assert "status 'Gewonnen' is used by 2 leads:" in fails(env, "statuses", "delete",
                                                               "Gewonnen")
    ok(env, "statuses", "add", "Verhandlung", "--kind", "open", "--position", "2")
    statuses = ok(env, "statuses", "list", "--format", "json").splitlines()
    assert [json.loads(s)["name"] for s in statuses] == ["Erstkontakt", "Verhandlung",
                                                         "Gewonnen", "Verloren"]
    ok(env, "leads", "delete", number)
    listed = ok(env, "leads", "list", "--won", "--format", "json").splitlines()
    assert [json.loads(line)["number"] for line in listed] == [11111]


def test_statuses_sales_task_and_filters_through_the_cli(env: dict[str, str]) -> None:
    ok(env, "statuses", "rename", "Erstkontakt", "Kontakt")
    kinds = ok(env, "statuses", "set-kind", "Kontakt", "won", "--format", "json").splitlines()
    assert [(s["name"], s["kind"], s["leads"]) for s in map(json.loads, kinds)] == [
        ("Kontakt", "won", 1), ("Gewonnen", "won", 0), ("Verloren", "lost", 0)]
    won = ok(env, "leads", "list", "--won", "--format", "json").splitlines()
    assert [json.loads(line)["number"] for line in won] == [11111]
    ok(env, "statuses", "add", "Angebot", "--kind", "open")
    reordered = ok(env, "statuses", "reorder", "Angebot", "Kontakt", "Gewonnen", "Verloren",
                   "--format", "json").splitlines()
    assert [(s["name"], s["position"], s["leads"]) for s in map(json.loads, reordered)] == [
        ("Angebot", 1, 0), ("Kontakt", 2, 1), ("Gewonnen", 3, 0), ("Verloren", 4, 0)]
    ok(env, "statuses", "delete", "Kontakt", "--replacement", "Angebot")
    assert "Angebot" in ok(env, "leads", "show", "11111")

    task = json.loads(ok(env, "leads", "sales-task", "acme", "--format", "json"))
    assert task == json.loads(ok(env, "leads", "sales-task", "acme", "--format", "json"))
    assert task["company"] == "acme" and task["task"] == "ACME AG"

    december = ok(env, "pipeline", "--from", "2026-12", "--to", "2026-12", "--sales-action",
                  "Messe 2026", "--company", "acme", "--format", "json").splitlines()
    assert json.loads(december[0])["expected_volume"] == "12000.00"
    later = ok(env, "pipeline", "--from", "2027-01", "--format", "json").splitlines()
    assert json.loads(later[0])["leads"] == 0
    usage = crm_mailer(env, "pipeline", "--from", "2027-1")  # a usage error: exit 2
    assert usage.returncode == 2
    assert "argument --from: month '2027-1' must be YYYY-MM" in usage.stderr
    assert "no company 'nope'" in fails(env, "leads", "list", "--company", "nope")
    ok(env, "leads", "delete", "11111", "--detach-history")
    assert ok(env, "leads", "list", "--format", "json") == ""
