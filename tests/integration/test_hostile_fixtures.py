"""Every fixtures/eml/hostile message over a real socket, on SQLite and PostgreSQL.

Each case gets the reply its expectation names, stores exactly what it says, doubles
nothing when the relay delivers it again, and leaves a daemon that still answers. All of
them at once must not hold up another session. The format is in fixtures/eml/hostile/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import smtplib
import socket
import sys
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer.db.models import InboundMessage
from tests import factories
from tests.conftest import Reply, SmtpClient, load_directory
from tests.integration.test_fixtures import assert_subset, stored

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "eml"
HOSTILE = FIXTURES / "hostile"
PATHS = sorted(HOSTILE.glob("*.eml"))
PLACEHOLDER = b"@@GENERATE@@"
MAX_COMMITTED_SIZE = 200_000
MAX_NOOP_SECONDS = 0.5
MAX_SECONDS = 10.0  # for any reply, unless the case says `max_seconds`
CONCURRENCY = 8
TIMEOUT = 60.0  # seconds a socket waits for one reply


@dataclass(frozen=True)
class Case:
    """One hostile message as it goes on the wire, and what must come of it."""

    name: str
    raw: bytes
    expected: dict[str, Any]

    @property
    def sender(self) -> str:
        return str(self.expected["envelope"]["from"])

    @property
    def recipients(self) -> list[str]:
        return list(self.expected["envelope"]["to"])

    @property
    def reply(self) -> int:
        return int(self.expected["reply"])


def generated(raw: bytes, recipe: dict[str, Any] | None) -> bytes:
    """The message with its `generate` recipe applied: `repeat` x `times` at the placeholder."""
    if recipe is None:
        return raw
    assert raw.count(PLACEHOLDER) == 1, "a generated case holds @@GENERATE@@ exactly once"
    return raw.replace(PLACEHOLDER, str(recipe["repeat"]).encode("utf-8") * int(recipe["times"]))


def load_case(name: str) -> Case:
    path = HOSTILE / f"{name}.eml"
    expected = json.loads(path.with_suffix(".expected.json").read_text(encoding="utf-8"))
    return Case(name, generated(path.read_bytes(), expected.get("generate")), expected)


def case_param(path: Path) -> Any:
    """The case as a test parameter; an `xfail` reason marks a known bug (strict)."""
    expected = json.loads(path.with_suffix(".expected.json").read_text(encoding="utf-8"))
    marks = [pytest.mark.xfail(reason=expected["xfail"], strict=True)] \
        if "xfail" in expected else []
    return pytest.param(path.stem, marks=marks, id=path.stem)


def directory() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / "directory.json").read_text("utf-8"))
    return document


# --- sending ---------------------------------------------------------------------------------

def stuffed(data: bytes) -> bytes:
    """DATA as the wire carries it: leading dots doubled, then the lone dot (RFC 5321 4.5.2)."""
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return re.sub(rb"(\A|\r\n)\.", rb"\1..", data) + b".\r\n"


def _read_reply(stream: Any) -> Reply:
    lines = []
    while True:
        line = stream.readline()
        if not line:
            raise ConnectionError("the server closed the connection")
        lines.append(line.rstrip(b"\r\n"))
        if line[3:4] != b"-":
            break
    text = b"\n".join(line[4:] for line in lines).decode("utf-8", "replace")
    return Reply(int(lines[-1][:3]), text)


def _send_raw(host: str, port: int, case: Case) -> Reply:
    """One transaction over a plain socket: the message bytes exactly, dot-stuffed."""
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        stream = sock.makefile("rb")

        def command(line: bytes) -> Reply:
            sock.sendall(line + b"\r\n")
            return _read_reply(stream)

        _read_reply(stream)  # greeting
        command(b"EHLO client.test")
        options = b" SMTPUTF8 BODY=8BITMIME" if case.expected.get("smtputf8") else b""
        reply = command(b"MAIL FROM:<" + case.sender.encode() + b">" + options)
        if reply.code != 250:
            return reply
        accepted = 0
        for recipient in case.recipients:
            reply = command(b"RCPT TO:<" + recipient.encode() + b">")
            accepted += reply.code == 250
        if not accepted:
            return reply
        start = command(b"DATA")
        assert start.code == 354, start
        sock.sendall(stuffed(case.raw))
        reply = _read_reply(stream)
        command(b"QUIT")
        return reply


def _send_smtplib(host: str, port: int, case: Case) -> Reply:
    with smtplib.SMTP(host, port, timeout=TIMEOUT) as client:
        client.ehlo("client.test")
        options = ["SMTPUTF8", "BODY=8BITMIME"] if case.expected.get("smtputf8") else []
        code, text = client.mail(case.sender, options)
        if code != 250:
            return Reply(code, text.decode())
        accepted = 0
        for recipient in case.recipients:
            code, text = client.rcpt(recipient)
            accepted += code == 250
        if not accepted:
            return Reply(code, text.decode())
        code, text = client.data(case.raw)
        return Reply(code, text.decode())


def send_case(smtp: SmtpClient, case: Case) -> Reply:
    """Deliver one case as its `send` says; the DATA reply or the refusal before it."""
    send = case.expected.get("send", "smtplib")
    assert send in ("smtplib", "raw"), send
    return (_send_raw if send == "raw" else _send_smtplib)(smtp.host, smtp.port, case)


def noop_on_a_fresh_connection(smtp: SmtpClient) -> int:
    with smtplib.SMTP(smtp.host, smtp.port, timeout=TIMEOUT) as client:
        return int(client.noop()[0])


# A separate process: a thread of the test would share the server's GIL, and a stall
# that holds the GIL (a long regex search) would stop the watch as well as the server.
WATCHER = """
import select, smtplib, sys, time
client = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=60)
client.ehlo("watch.test")
print("ready", flush=True)
slowest = count = 0
while not select.select([sys.stdin], [], [], 0.01)[0]:
    started = time.perf_counter()
    client.noop()
    slowest, count = max(slowest, time.perf_counter() - started), count + 1
client.quit()
print(slowest, count, flush=True)
"""


@dataclass
class NoopWatch:
    """Another session's NOOP round trips while the block runs: did anything stall them?"""

    slowest: float = 0.0
    count: int = 0


@contextlib.asynccontextmanager
async def noop_watch(smtp: SmtpClient) -> AsyncIterator[NoopWatch]:
    watch = NoopWatch()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WATCHER, smtp.host, str(smtp.port),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    try:
        assert await process.stdout.readline() == b"ready\n"
        yield watch
    finally:
        process.stdin.close()
        slowest, count = (await process.stdout.read()).split()
        await process.wait()
    watch.slowest, watch.count = float(slowest), int(count)


# --- what is stored ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Stored:
    """One tenant's history entries and pending matches, by id."""

    history: dict[int, dict[str, Any]]
    pending: dict[int, dict[str, Any]]

    def since(self, before: Stored) -> Stored:
        return Stored({k: v for k, v in self.history.items() if k not in before.history},
                      {k: v for k, v in self.pending.items() if k not in before.pending})


async def stored_by_tenant(sessions: async_sessionmaker[AsyncSession],
                           slugs: Sequence[str]) -> dict[str, Stored]:
    found = {}
    for slug in slugs:
        history, pending = await stored(sessions, slug)
        found[slug] = Stored({h["id"]: h for h in history}, {p["id"]: p for p in pending})
    return found


async def message_ids(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return list(await session.scalars(select(InboundMessage.message_id)
                                          .order_by(InboundMessage.id)))


async def message_count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(InboundMessage)) or 0)


def check_reply(case: Case, reply: Reply, when: str) -> None:
    assert reply.code == case.reply, f"{case.name} ({when}): {reply}"
    if contains := case.expected.get("reply_contains"):
        assert contains in reply.text, f"{case.name} ({when}): {reply} lacks {contains!r}"


def check_outcome(case: Case, slug: str, new: Stored, want: dict[str, Any]) -> None:
    where = f"{case.name} [{slug}]"
    history, pending = list(new.history.values()), list(new.pending.values())
    outcome = want["outcome"]
    if outcome == "none":
        assert (history, pending) == ([], []), where
        return
    if outcome == "filed":
        assert len(history) == 1 and pending == [], f"{where}: {history} {pending}"
        item = history[0]
        assert_subset(item, want.get("history", {}), where)
    elif outcome == "queued":
        assert history == [] and len(pending) == 1, f"{where}: {history} {pending}"
        item = pending[0]
        assert_subset(item, want.get("pending", {}), where)
    else:
        assert outcome == "unprocessable", where
        assert history == [] and len(pending) == 1, f"{where}: {history} {pending}"
        item = pending[0]
        assert item["reasons"] == ["unprocessable"], f"{where}: {item['reasons']}"
        assert_subset(item, want.get("pending", {}), where)
        if text := want.get("error_contains"):
            assert text in (item["error"] or ""), f"{where}: error {item['error']!r}"
    # No field of any stored message holds a NUL (PostgreSQL text refuses it; JSON keeps it).
    assert "\\u0000" not in json.dumps(item), f"{where}: a NUL is stored"
    for text in want.get("body_contains", []):
        assert text in item["body"], f"{where}: body lacks {text!r}"
    for text in want.get("body_excludes", []):
        assert text not in item["body"], f"{where}: body has {text!r}"
    if "body_max_chars" in want:
        assert len(item["body"]) <= want["body_max_chars"], \
            f"{where}: body of {len(item['body'])} characters"
    if "attachments" in want:
        got = item["attachments"]
        assert len(got) == len(want["attachments"]), f"{where}: {got}"
        for index, (actual, expected) in enumerate(zip(got, want["attachments"], strict=True)):
            assert_subset(actual, expected, f"{where} attachment {index}")


# --- the tests -----------------------------------------------------------------------------------

def test_every_hostile_case_is_complete_and_small() -> None:
    assert len(PATHS) >= 25, len(PATHS)
    assert (HOSTILE / "README.md").exists()
    for path in PATHS:
        expected = json.loads(path.with_suffix(".expected.json").read_text(encoding="utf-8"))
        assert {"description", "envelope", "reply", "results"} <= expected.keys(), path.name
        assert path.stat().st_size < MAX_COMMITTED_SIZE, path.name
        assert (PLACEHOLDER in path.read_bytes()) == ("generate" in expected), path.name
        for other in expected.get("preceded_by", []):
            assert (HOSTILE / f"{other}.eml").exists(), (path.name, other)
    assert sorted(HOSTILE.glob("*.expected.json")) == \
        sorted(p.with_suffix(".expected.json") for p in PATHS)


@pytest.mark.parametrize("name", [case_param(p) for p in PATHS])
async def test_each_hostile_message_gets_its_reply_and_outcome(
        name: str, sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    document = directory()
    slugs = [tenant["slug"] for tenant in document["tenants"]]
    await load_directory(sessions, document)
    case = load_case(name)

    for earlier in map(load_case, case.expected.get("preceded_by", [])):
        check_reply(earlier, await asyncio.to_thread(send_case, smtp, earlier), "preceding")
    before = await stored_by_tenant(sessions, slugs)
    count_before = await message_count(sessions)

    started = time.perf_counter()
    async with noop_watch(smtp) as watch:
        reply = await asyncio.to_thread(send_case, smtp, case)
    elapsed = time.perf_counter() - started
    check_reply(case, reply, f"first delivery, {elapsed:.2f} s")
    assert watch.slowest < MAX_NOOP_SECONDS, \
        f"{case.name}: another session waited {watch.slowest:.2f} s for a NOOP"
    assert elapsed < case.expected.get("max_seconds", MAX_SECONDS), \
        f"{case.name}: the reply took {elapsed:.2f} s"
    after = await stored_by_tenant(sessions, slugs)
    for slug in slugs:
        want = case.expected["results"].get(slug, {"outcome": "none"})
        check_outcome(case, slug, after[slug].since(before[slug]), want)
    if "stored_message_ids" in case.expected:
        assert await message_ids(sessions) == case.expected["stored_message_ids"]
    assert await asyncio.to_thread(noop_on_a_fresh_connection, smtp) == 250

    # The relaying server may deliver again (it never saw our reply): nothing doubles.
    count = await message_count(sessions)
    again = await asyncio.to_thread(send_case, smtp, case)
    check_reply(case, again, "second delivery")
    if case.reply == 250 and count > count_before:  # machine mail dropped: dropped again
        assert "already received" in again.text, f"{case.name}: {again}"
    assert await message_count(sessions) == count
    assert await stored_by_tenant(sessions, slugs) == after
    assert await asyncio.to_thread(noop_on_a_fresh_connection, smtp) == 250

    normal = await smtp.send(factories.mail(message_id=f"<after-{name}@xyz.de>"))
    assert normal.code == 250 and "filed" in normal.text, normal


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_all_hostile_messages_at_once_do_not_hold_up_another_session(
        backend: str, sessions: async_sessionmaker[AsyncSession], smtp: SmtpClient) -> None:
    """Known bugs (xfail cases) have their own failing test; this one pins the rest."""
    await load_directory(sessions, directory())
    cases = [case for case in (load_case(path.stem) for path in PATHS)
             if "xfail" not in case.expected]

    def send_all() -> list[Reply]:
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            return list(pool.map(lambda case: send_case(smtp, case), cases))

    async with noop_watch(smtp) as watch:
        replies = await asyncio.to_thread(send_all)
    wrong = [(case.name, str(reply)) for case, reply in zip(cases, replies, strict=True)
             if reply.code != case.reply]
    assert wrong == []
    assert watch.slowest < MAX_NOOP_SECONDS, \
        f"slowest NOOP {watch.slowest:.3f} s of {watch.count}"
    normal = await smtp.send(factories.mail(message_id="<after-all@xyz.de>"))
    assert normal.code == 250, normal
