"""`crm-mailer serve --workers N`: N processes on one port, kept by a supervisor."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests import factories
from tests.acceptance.test_cli import ROOT, cli_env, crm_mailer, wait_for_port
from tests.pgcluster import free_port


def children(pid: int) -> set[int]:
    """The live child processes of `pid` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def until(condition: object, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def send(port: int, message_id: str) -> int | str:
    """One message on a new connection: the reply code to DATA (or to the command that
    refused it), or what went wrong."""
    mail = factories.mail(message_id=f"<{message_id}>")
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.sendmail("alice@xyz.de", ["crm@xyz.hq.example"], mail)
        return 250
    except smtplib.SMTPResponseException as exc:
        return exc.smtp_code
    except smtplib.SMTPRecipientsRefused as exc:
        [(code, _)] = exc.recipients.values()
        return code
    except (OSError, smtplib.SMTPException) as exc:
        return type(exc).__name__


def load(port: int, count: int, prefix: str, *, after: int,
         interrupt: Callable[[], None]) -> dict[str, int | str]:
    """`count` messages on eight sessions, `interrupt` called once `after` of them were
    answered: each Message-ID with its outcome (see `send`)."""
    sent = threading.Semaphore(0)

    def one(index: int) -> tuple[str, int | str]:
        message_id = f"{prefix}-{index}@xyz.de"
        try:
            return message_id, send(port, message_id)
        finally:
            sent.release()

    with ThreadPoolExecutor(8) as pool:
        results = pool.map(one, range(count))
        for _ in range(after):
            sent.acquire()
        interrupt()
        return dict(results)


def stored_once(env: dict[str, str]) -> set[str]:
    """The Message-IDs tenant xyz has stored; fails if one is stored twice."""
    listed = crm_mailer(env, "messages", "list", "--tenant", "xyz", "--format", "json",
                        "--limit", "1000")
    assert listed.returncode == 0, listed.stderr
    stored = [json.loads(line)["message_id"] for line in listed.stdout.splitlines()]
    assert len(stored) == len(set(stored))  # never twice
    return set(stored)


@pytest.fixture
def workers(tmp_path: Path, pg_database_url: str) -> Iterator[tuple[dict[str, str], int,
                                                                    subprocess.Popen[str]]]:
    env = cli_env(tmp_path, CRM_MAILER_DATABASE_URL=pg_database_url)
    directory = tmp_path / "directory.json"
    directory.write_text(factories.dumps(factories.directory()))
    assert crm_mailer(env, "import", str(directory)).returncode == 0
    port = free_port()
    # The log goes to a file: a pipe nobody reads fills up and stops every worker writing.
    log = (tmp_path / "serve.log").open("w")
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "crm_mailer", "serve", "--port", str(port), "--workers", "2"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        wait_for_port(port, supervisor)
        until(lambda: len(children(supervisor.pid)) == 2)
        yield env, port, supervisor
    finally:
        supervisor.kill()
        supervisor.wait(timeout=30)
        log.close()


@pytest.mark.postgres
def test_a_worker_killed_mid_load_loses_no_accepted_mail_and_the_port_keeps_answering(
        workers: tuple[dict[str, str], int, subprocess.Popen[str]], tmp_path: Path) -> None:
    env, port, supervisor = workers
    victim = min(children(supervisor.pid))
    # Mid-load: other sessions are in flight.
    outcomes = load(port, 300, "load", after=60,
                    interrupt=lambda: os.kill(victim, signal.SIGKILL))

    # The other worker kept serving; the supervisor started a new one in the victim's place.
    until(lambda: len(children(supervisor.pid)) == 2 and victim not in children(
        supervisor.pid))
    died = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines()
            if '"smtp.worker_died"' in line]
    assert [(e["pid"], e["exit_status"]) for e in died] == [(victim, -signal.SIGKILL)]
    after = [send(port, f"after-{i}@xyz.de") for i in range(20)]
    assert after == [250] * 20, after

    accepted = {m for m, outcome in outcomes.items() if outcome == 250}
    assert len(accepted) >= 200, outcomes  # most of the load went through
    assert {o for o in outcomes.values() if o != 250} <= {
        "SMTPServerDisconnected", "ConnectionResetError", "ConnectionRefusedError",
        "SMTPConnectError", 421, 451}, outcomes
    stored = stored_once(env)
    assert accepted <= stored  # every 250 is stored
    assert {f"after-{i}@xyz.de" for i in range(20)} <= stored

    running = children(supervisor.pid)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=60) == 0
    assert not [pid for pid in running if Path(f"/proc/{pid}").exists()]  # drained and gone


def alive(pid: int) -> bool:
    """Running, not a zombie (an orphaned worker is reaped by init, not by us)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_workers_stop_when_the_supervisor_is_killed_and_its_log_reader_is_gone(
        tmp_path: Path) -> None:
    port = free_port()
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "crm_mailer", "serve", "--port", str(port), "--workers", "2"],
        env=cli_env(tmp_path), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: set[int] = set()
    try:
        wait_for_port(port, supervisor)  # type: ignore[arg-type]
        until(lambda: len(children(supervisor.pid)) == 2)
        workers = children(supervisor.pid)
        assert supervisor.stderr is not None
        supervisor.stderr.close()  # whoever read the log is gone too: writing it fails
        supervisor.kill()
        supervisor.wait(timeout=30)
        until(lambda: not any(alive(pid) for pid in workers))
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_serve_refuses_a_bad_number_of_workers_as_usage(tmp_path: Path) -> None:
    for value in ("0", "many", "257"):
        result = crm_mailer(cli_env(tmp_path), "serve", "--workers", value)
        assert result.returncode == 2, result.stderr
        assert "--workers" in result.stderr, result.stderr
