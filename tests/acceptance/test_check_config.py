"""`crm-mailer check-config`: one line per check, exit 0 when all pass, 1 otherwise; it
reports a broken configuration as a failed check too, and never prints a password."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.test_cli import cli_env, crm_mailer
from tests.integration.test_smtp_tls import make_certificate
from tests.pgcluster import free_port


def checks(env: dict[str, str]) -> tuple[int, dict[str, str]]:
    result = crm_mailer(env, "check-config")
    assert "Traceback" not in result.stderr
    found = {}
    for line in result.stdout.splitlines():
        verdict, _, rest = line.partition(" ")
        name, _, detail = rest.strip().partition(": ")
        found[name] = f"{verdict} {detail}"
    return result.returncode, found


def test_the_embedded_default_passes(tmp_path: Path) -> None:
    code, found = checks(cli_env(tmp_path))
    assert code == 0
    assert list(found) == ["configuration", "database", "tls", "listen", "metrics"]
    assert found["database"].endswith("(embedded; created on first start)")
    assert found["listen"] == "ok 127.0.0.1:2525"
    assert found["metrics"] == "ok off (no metrics_listen)"


@pytest.mark.postgres
def test_a_current_postgresql_passes_and_its_password_is_not_shown(
        tmp_path: Path, pg_database_url: str) -> None:
    url = pg_database_url.replace("postgresql://postgres@", "postgresql://postgres:s3cret@")
    env = cli_env(tmp_path, CRM_MAILER_DATABASE_URL=url)
    code, found = checks(env)
    assert code == 0, found
    assert found["schema"].startswith("ok at ")
    assert "s3cret" not in str(found)


@pytest.mark.postgres
def test_an_unmigrated_postgresql_fails_the_schema_check(
        tmp_path: Path, pg_empty_database_url: str) -> None:
    code, found = checks(cli_env(tmp_path, CRM_MAILER_DATABASE_URL=pg_empty_database_url))
    assert code == 1
    assert found["database"].startswith("ok ")
    assert found["schema"].startswith("FAILED ") and "crm-mailer db upgrade" in found["schema"]


def test_each_broken_part_is_its_own_failed_line(tmp_path: Path) -> None:
    cert = make_certificate(tmp_path, "live")
    env = cli_env(tmp_path, CRM_MAILER_DATABASE_URL=f"postgresql://x@127.0.0.1:{free_port()}/db",
                  CRM_MAILER_LISTEN_HOST="192.0.2.1",  # TEST-NET-1: never this machine's
                  CRM_MAILER_METRICS_LISTEN="198.51.100.7:9125",  # TEST-NET-2
                  CRM_MAILER_TLS_CERT_FILE=str(cert.cert),
                  CRM_MAILER_TLS_KEY_FILE=str(tmp_path / "missing.key"))
    code, found = checks(env)
    assert code == 1
    assert found["configuration"].startswith("ok ")
    assert found["database"].startswith("FAILED ") and "Connect" in found["database"]
    assert found["tls"].startswith(f"FAILED {cert.cert}: ") and "No such file" in found["tls"]
    assert found["listen"].startswith("FAILED 192.0.2.1: not an address of this machine")
    assert found["metrics"].startswith("FAILED 198.51.100.7: not an address of this machine")


def test_metrics_on_the_smtp_address_fails(tmp_path: Path) -> None:
    code, found = checks(cli_env(tmp_path, CRM_MAILER_METRICS_LISTEN="127.0.0.1:2525"))
    assert code == 1
    assert found["metrics"] == "FAILED 127.0.0.1:2525 is the SMTP listen address"
    code, found = checks(cli_env(tmp_path, CRM_MAILER_METRICS_LISTEN="127.0.0.1:9125"))
    assert code == 0 and found["metrics"] == "ok 127.0.0.1:9125"


def test_a_broken_configuration_is_a_failed_check(tmp_path: Path) -> None:
    config = tmp_path / "crm-mailer.toml"
    config.write_text("listen_port = 99999\n")
    code, found = checks(cli_env(tmp_path, CRM_MAILER_CONFIG=str(config)))
    assert code == 1
    assert list(found) == ["configuration"]
    assert found["configuration"].startswith("FAILED ") and "listen_port" in \
        found["configuration"]


def test_a_good_certificate_passes(tmp_path: Path) -> None:
    cert = make_certificate(tmp_path, "live")
    code, found = checks(cli_env(tmp_path, CRM_MAILER_TLS_CERT_FILE=str(cert.cert),
                                 CRM_MAILER_TLS_KEY_FILE=str(cert.key)))
    assert code == 0, found
    assert found["tls"] == f"ok {cert.cert} and its key load"
