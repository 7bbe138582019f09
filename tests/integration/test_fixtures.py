"""Every fixtures/eml message (and the machine mail in conversation/machine), sent over SMTP on
both backends, ends as its expectation says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer.db.repositories import tenant_by_slug
from crm_mailer.views import list_history, list_messages, list_pending
from tests.conftest import SmtpClient, load_directory

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "eml"
MACHINE = FIXTURES / "conversation" / "machine"
CASES = sorted(FIXTURES.glob("*.eml")) + sorted(MACHINE.glob("*.eml"))


def test_every_fixture_has_an_expectation() -> None:
    assert len(CASES) >= 20
    for case in CASES:
        assert case.with_suffix(".expected.json").exists(), case.name


async def stored(sessions: async_sessionmaker[AsyncSession],
                 slug: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    async with sessions() as session:
        tenant = await tenant_by_slug(session, slug)
        assert tenant is not None
        return (await list_history(session, tenant.id),
                await list_pending(session, tenant.id, include_resolved=True))


async def received(sessions: async_sessionmaker[AsyncSession], slug: str) -> list[dict[str, Any]]:
    """Every message stored for the tenant, with its outcome and reasons."""
    async with sessions() as session:
        tenant = await tenant_by_slug(session, slug)
        assert tenant is not None
        return await list_messages(session, tenant.id)


def assert_subset(actual: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    for key, value in expected.items():
        assert actual.get(key) == value, f"{where}: {key}: {actual.get(key)!r} != {value!r}"


@pytest.mark.parametrize("case", CASES, ids=[str(c.relative_to(FIXTURES).with_suffix(""))
                                             for c in CASES])
async def test_fixture_message(case: Path, sessions: async_sessionmaker[AsyncSession],
                               smtp: SmtpClient) -> None:
    expected = json.loads(case.with_suffix(".expected.json").read_text())
    await load_directory(sessions, json.loads((FIXTURES / "directory.json").read_text()))
    raw = case.read_bytes()
    envelope = expected["envelope"]

    reply = await smtp.send(raw, sender=envelope["from"], recipients=envelope["to"])
    assert reply.code == expected["reply"], str(reply)
    assert expected.get("reply_contains", "") in reply.text, str(reply)
    # The relaying server may deliver again (it never saw our 250): nothing doubles.
    again = await smtp.send(raw, sender=envelope["from"], recipients=envelope["to"])
    assert again.code == expected["reply"], str(again)

    for slug, want in expected["results"].items():
        history, pending = await stored(sessions, slug)
        messages = await received(sessions, slug)
        where = f"{case.name} [{slug}]"
        outcome = want["outcome"]
        if outcome == "none":
            assert (history, pending, messages) == ([], [], []), where
            continue
        assert [m["outcome"] for m in messages] == [outcome], f"{where}: {messages}"
        if outcome == "ignored":
            assert history == [] and pending == [], f"{where}: {history} {pending}"
            assert_subset(messages[0], want.get("message", {}), where)
            continue
        if outcome == "filed":
            assert len(history) == 1 and pending == [], f"{where}: {history} {pending}"
            item = history[0]
            assert_subset(item, want.get("history", {}), where)
        else:
            assert outcome == "queued", where
            assert history == [] and len(pending) == 1, f"{where}: {history} {pending}"
            item = pending[0]
            assert_subset(item, want.get("pending", {}), where)
        for text in want.get("body_contains", []):
            assert text in item["body"], f"{where}: body lacks {text!r}"
        for text in want.get("body_excludes", []):
            assert text not in item["body"], f"{where}: body has {text!r}"
        if "attachments" in want:
            got = [{k: a[k] for k in ("filename", "content_type")} for a in item["attachments"]]
            assert got == want["attachments"], where

