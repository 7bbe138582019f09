"""The sender policy and reprocessing from the command line (issue 7)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from crm_mailer.db.engine import create_engine, session_factory
from crm_mailer.ingest import keep_unprocessable
from tests import factories
from tests.acceptance.test_cli import cli_env, crm_mailer
from tests.acceptance.test_leads_cli import fails, ok


def imported(tmp_path: Path) -> dict[str, str]:
    env = cli_env(tmp_path, CRM_MAILER_TENANT="xyz")
    directory = tmp_path / "directory.json"
    directory.write_text(factories.dumps(factories.directory()))
    assert crm_mailer(env, "import", str(directory)).returncode == 0
    return env


def test_sender_policy_is_set_shown_and_checked(tmp_path: Path) -> None:
    env = imported(tmp_path)
    [tenant] = [json.loads(line) for line in
                ok(env, "tenants", "list", "--format", "json").splitlines()]
    assert tenant["sender_policy"] == "aligned"
    assert ok(env, "tenants", "set-sender-policy", "dkim").strip() == \
        "tenant 'xyz': sender_policy = dkim"
    assert "dkim" in ok(env, "tenants", "list")
    refused = crm_mailer(env, "tenants", "set-sender-policy", "maybe")
    assert refused.returncode == 2 and "invalid choice" in refused.stderr
    assert "no tenant 'nope'" in fails(env, "tenants", "set-sender-policy", "--tenant", "nope",
                                       "header")


def test_reprocess_files_what_was_kept_as_unprocessable(tmp_path: Path) -> None:
    env = imported(tmp_path)
    assert "nothing to reprocess" in ok(env, "reprocess")

    async def keep() -> None:  # as the daemon keeps a message it could not read
        database = tmp_path / "state" / "crm-mailer" / "crm-mailer.sqlite3"
        engine = create_engine(f"sqlite+aiosqlite:///{database}")
        try:
            await keep_unprocessable(
                session_factory(engine), raw=factories.mail(message_id="<kept@xyz.de>"),
                message_id="kept@xyz.de", derived=False, envelope_sender="alice@xyz.de",
                recipients=["crm@xyz.hq.example"], local_part="crm",
                error="ZeroDivisionError: a bug since fixed", started=time.perf_counter())
        finally:
            await engine.dispose()

    asyncio.run(keep())
    [waiting] = [json.loads(line) for line in
                 ok(env, "pending", "list", "--format", "json").splitlines()]
    assert waiting["reasons"] == ["unprocessable"] and "since fixed" in waiting["error"]
    assert ok(env, "reprocess", str(waiting["id"])).strip() == "tenant 'xyz': 1 filed"
    [entry] = [json.loads(line) for line in
               ok(env, "history", "list", "--format", "json").splitlines()]
    assert (entry["message_id"], entry["lead"], entry["filed_by"]) == \
        ("kept@xyz.de", 11111, "crm-mailer (reprocess)")
