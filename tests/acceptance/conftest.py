"""The CLI as operators run it: one environment per backend, shared by the command tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import factories
from tests.acceptance.test_cli import cli_env, crm_mailer


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The environment `crm-mailer` runs in: tenant xyz, user anna, a fresh database."""
    extra = {}
    if request.param == "postgresql":
        extra["CRM_MAILER_DATABASE_URL"] = request.getfixturevalue("pg_database_url")
    return cli_env(tmp_path, CRM_MAILER_TENANT="xyz", CRM_MAILER_USER="anna", **extra)


@pytest.fixture
def env(cli: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """`cli` with the example directory imported (tenant xyz: acme, globex, lead 11111)."""
    directory = tmp_path / "directory.json"
    directory.write_text(factories.dumps(factories.directory()))
    assert crm_mailer(cli, "import", str(directory)).returncode == 0
    return cli
