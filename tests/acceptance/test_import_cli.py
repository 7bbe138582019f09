"""`crm-mailer import` as an operator runs it again after changes made through the library:
the report, --dry-run and --overwrite, on the embedded SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests import factories
from tests.acceptance.test_cli import crm_mailer


@pytest.fixture
def env(cli: dict[str, str]) -> dict[str, str]:
    return cli


def run(env: dict[str, str], *args: str) -> str:
    result = crm_mailer(env, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def write(path: Path, document: dict[str, Any]) -> str:
    path.write_text(factories.dumps(document))
    return str(path)


def lead(env: dict[str, str], number: int) -> dict[str, Any]:
    return dict(json.loads(run(env, "leads", "show", str(number), "--format", "json")))


def test_reimport_after_convert_dry_run_and_overwrite(env: dict[str, str],
                                                      tmp_path: Path) -> None:
    readme = write(tmp_path / "readme.json", factories.directory())
    run(env, "import", readme)
    assert run(env, "leads", "convert", "11111").strip() == "20002"
    run(env, "leads", "update", "11111", "--name", "Relaunch (Anna)")
    document = factories.directory()
    document["tenants"][0]["contacts"].append({"email": "carol@acme.com", "company": "acme"})
    document["tenants"][0]["projects"][0]["name"] = "Support 2027"
    changed = write(tmp_path / "changed.json", document)

    dry = run(env, "import", "--dry-run", changed)
    assert dry.splitlines() == [
        "created     tenant 'xyz', contact 'carol@acme.com'",
        "changed     tenant 'xyz', project 20001: name",
        "conflict    tenant 'xyz', lead 11111, name: imported 'Website-Relaunch', current "
        "'Relaunch (Anna)'; kept: changed in the CRM since the last import",
        "conflict    tenant 'xyz', lead 11111, status: imported 'Erstkontakt', current "
        "'Gewonnen'; kept: converted to project 20002, it must keep a won status, not "
        "'Erstkontakt' (open)",
        "unchanged   tenant 'xyz': 3 lead statuses, 1 sales action, 1 company, 1 contact",
        "left alone  tenant 'xyz': 1 project not in the file",
        "would import 1 tenant: 2 conflicts, 1 contact created, 1 project updated "
        "(dry run: nothing was stored)"]
    assert run(env, "import", "--dry-run", changed) == dry  # it stored nothing

    forced = run(env, "import", "--overwrite", changed).splitlines()
    assert forced[2:4] == [
        "changed     tenant 'xyz', lead 11111: name",
        "overwritten tenant 'xyz', lead 11111, name: imported 'Website-Relaunch', was "
        "'Relaunch (Anna)'"]
    assert forced[4].startswith("conflict    tenant 'xyz', lead 11111, status: ")
    assert forced[-1] == ("imported 1 tenant: 1 conflict, 1 contact created, 1 lead "
                          "updated, 1 overwritten, 1 project updated")
    shown = lead(env, 11111)
    assert (shown["name"], shown["status"], shown["status_kind"], shown["project"]) == (
        "Website-Relaunch", "Gewonnen", "won", 20002)

    again = run(env, "import", changed).splitlines()
    assert [line.split(",")[0:2] for line in again if line.startswith("conflict")] == [
        ["conflict    tenant 'xyz'", " lead 11111"]]
    assert again[-1] == "imported 1 tenant: 1 conflict"


def test_an_unknown_key_is_one_line_and_stores_nothing(env: dict[str, str],
                                                      tmp_path: Path) -> None:
    document = factories.directory()
    document["tenants"][0]["leads"][0]["stauts"] = document["tenants"][0]["leads"][0].pop(
        "status")
    result = crm_mailer(env, "import", write(tmp_path / "typo.json", document))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "crm-mailer: tenant 'xyz', lead 11111: key 'stauts' is unknown (known: number, name, "
        "company, contact, status, sales_action, planned_revenues)"]
    assert crm_mailer(env, "leads", "list").returncode == 1  # no tenant 'xyz'


def test_reimport_after_status_and_review_changes_with_the_cli(env: dict[str, str],
                                                                tmp_path: Path) -> None:
    """The README's second example: statuses renamed, reordered and deleted, and the review
    policy set, with the CLI; then the file forced back with --overwrite."""
    readme = write(tmp_path / "readme.json", factories.directory())
    run(env, "import", readme)
    run(env, "statuses", "rename", "Erstkontakt", "Neu")
    run(env, "statuses", "reorder", "Gewonnen", "Neu", "Verloren")
    run(env, "statuses", "delete", "Verloren")
    kept = "kept: changed in the CRM since the last import"
    assert run(env, "import", "--dry-run", readme).splitlines() == [
        "conflict    tenant 'xyz', lead_statuses order: imported 'Erstkontakt, Gewonnen', "
        f"current 'Gewonnen, Neu'; {kept}",
        "conflict    tenant 'xyz', lead status 'Erstkontakt', name: imported 'Erstkontakt', "
        f"current 'Neu'; {kept}",
        "conflict    tenant 'xyz', lead status 'Verloren': deleted in the CRM since the last "
        "import; not created again",
        "unchanged   tenant 'xyz': 1 lead status, 1 sales action, 1 company, 1 contact, "
        "1 project, 1 lead",
        "would import 1 tenant: 3 conflicts (dry run: nothing was stored)"]
    assert lead(env, 11111)["status"] == "Neu"

    run(env, "tenants", "set-review", "all")
    reviewed = write(tmp_path / "reviewed.json", factories.directory(review="uncertain"))
    assert run(env, "import", reviewed).splitlines()[0] == (
        f"conflict    tenant 'xyz', review: imported 'uncertain', current 'all'; {kept}")
    forced = run(env, "import", "--overwrite", reviewed).splitlines()
    assert forced[:3] == [
        "changed     tenant 'xyz': review, lead_statuses order",
        "overwritten tenant 'xyz', review: imported 'uncertain', was 'all'",
        "overwritten tenant 'xyz', lead_statuses order: imported 'Erstkontakt, Gewonnen', was "
        "'Gewonnen, Neu'"]
    assert forced[-1] == ("imported 1 tenant: 1 lead status created, 1 lead status "
                          "updated, 4 overwritten, 1 tenant updated")
    listed = [json.loads(line) for line in run(env, "statuses", "list", "--format",
                                               "json").splitlines()]
    assert [(s["name"], s["kind"], s["leads"]) for s in listed] == [
        ("Erstkontakt", "open", 1), ("Gewonnen", "won", 0), ("Verloren", "lost", 0)]
    [tenant] = map(json.loads, run(env, "tenants", "list", "--format", "json").splitlines())
    assert tenant["review"] == "uncertain"
    assert run(env, "import", reviewed).splitlines()[-1] == "imported 1 tenant: nothing changed"
