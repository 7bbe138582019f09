"""Every value on the command line is checked before any work: a value that cannot be right
is a usage error (exit 2, naming its flag) on every backend; an ID or number that no record
can have is "no such record" (exit 1), never "the database is not available"."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import factories
from tests.acceptance.test_cli import cli_env, crm_mailer
from tests.acceptance.test_leads_cli import fails, ok

BEYOND_INTEGER = str(2**31)  # past PostgreSQL's integer: the IDs of history and the queue
BEYOND_BIGINT = str(2**63)  # past its bigint: lead and project numbers


@pytest.mark.parametrize(("args", "flag", "says"), [
    (("serve", "--port", "99999"), "--port", "99999 is not a port: it must be from 0 to 65535"),
    (("serve", "--port", "-1"), "--port", "-1 is not a port"),
    (("serve", "--port", "25x"), "--port", "'25x' is not a whole number"),
    (("serve", "--workers", "0"), "--workers", "must be between 1 and 256, not '0'"),
    (("history", "list", "--limit", "-1"), "--limit", "-1 must be from 0 to"),
    (("history", "list", "--limit", str(2**63)), "--limit", f"{2**63} must be from 0 to"),
    (("pending", "list", "--offset", "-3"), "--offset", "-3 must be from 0 to"),
    (("pending", "show", "0"), "ID", "0 must be 1 or more"),
    (("history", "list", "--lead", "-5"), "--lead", "-5 must be 1 or more"),
    (("leads", "show", "abc"), "number", "'abc' is not a whole number"),
    # int() would read these as 11111 and 1, float() as 1000 days.
    (("leads", "show", "1_1111"), "number", "'1_1111' is not a whole number"),
    (("pending", "show", "\u0661"), "ID", "'\u0661' is not a whole number"),
    (("pending", "expire", "--older-than", "1e3"), "--older-than",
     "'1e3' is not a number of days"),
    (("pipeline", "--from", "2027-13"), "--from", "month '2027-13' must be YYYY-MM"),
    (("pipeline", "--to", "0000-12"), "--to", "month '0000-12' must be YYYY-MM"),
    (("leads", "revenue", "11111", "--month", "2027-01", "--amount", "-5"), "--amount",
     "amount '-5' must be between 0 and"),
    (("leads", "revenue", "11111", "--month", "2027-01", "--amount", "1.234"), "--amount",
     "amount '1.234' must have at most two decimal places"),
    (("leads", "revenue", "11111", "--month", "2027-01", "--amount", "1_000"), "--amount",
     "amount '1_000' is not a decimal number such as '1234.50'"),
    (("statuses", "add", "Neu", "--kind", "open", "--position", "0"), "--position",
     "0 must be 1 or more"),
])
def test_a_value_that_cannot_be_right_is_a_usage_error(
        tmp_path: Path, args: tuple[str, ...], flag: str, says: str) -> None:
    result = crm_mailer(cli_env(tmp_path, CRM_MAILER_TENANT="xyz"), *args)
    assert result.returncode == 2, result.stderr
    [*_, last] = result.stderr.strip().splitlines()
    assert f"argument {flag}: {says}" in last, last
    assert "Traceback" not in result.stderr


def test_an_id_or_number_no_record_can_have_is_not_found(env: dict[str, str]) -> None:
    assert fails(env, "pending", "show", BEYOND_INTEGER) \
        == f"crm-mailer: no pending mail {BEYOND_INTEGER} in tenant 'xyz'"
    assert fails(env, "pending", "reject", BEYOND_INTEGER) \
        == f"crm-mailer: no pending mail {BEYOND_INTEGER} in tenant 'xyz'"
    assert fails(env, "history", "move", BEYOND_INTEGER, "--lead", "11111") \
        == f"crm-mailer: no history entry {BEYOND_INTEGER} in tenant 'xyz'"
    assert fails(env, "leads", "show", BEYOND_BIGINT) \
        == f"crm-mailer: no lead {BEYOND_BIGINT} in tenant 'xyz'"
    assert fails(env, "leads", "convert", BEYOND_BIGINT) \
        == f"crm-mailer: no lead {BEYOND_BIGINT} in tenant 'xyz'"
    assert ok(env, "history", "list", "--lead", BEYOND_BIGINT).splitlines()[-1] == "(0 rows)"
    assert ok(env, "reprocess", BEYOND_INTEGER).strip() \
        == "tenant 'xyz': nothing to reprocess"  # not every unprocessable item


def test_refusals_name_the_flag_that_fixes_them_and_counts_are_singular(
        env: dict[str, str], tmp_path: Path) -> None:
    assert fails(env, "statuses", "delete", "Erstkontakt").endswith(
        "is used by 1 lead: name a replacement status to move them to with --replacement STATUS")
    ok(env, "leads", "create", "--name", "Wartung", "--company", "acme", "--status",
       "Erstkontakt")
    chart = ok(env, "pipeline", "--format", "chart").splitlines()
    assert chart[-1].endswith("(2 leads)") and "(1 lead)" not in chart[-1]
    again = tmp_path / "again.json"
    again.write_text(factories.dumps(factories.directory()))
    assert ok(env, "import", str(again)).splitlines()[-1] == "imported 1 tenant: nothing changed"
