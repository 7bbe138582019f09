"""The systemd units (verified and rated by systemd-analyze where it exists) and the notify
protocol's pieces (the whole protocol against a running serve: tests/acceptance/test_notify.py)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from crm_mailer.systemd import DATABASE_DOWN, SERVING, Notifier, keep_informed

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("crm-mailer.service", "crm-mailer-expire.service")
MAX_EXPOSURE = 2.5
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def installed_units(tmp_path: Path) -> Path:
    """The units as installed, with /opt/crm-mailer's command pointing at this checkout's."""
    command = Path(sys.prefix) / "bin" / "crm-mailer"
    assert command.exists(), command
    for name in (*UNITS, "crm-mailer-expire.timer"):
        text = (ROOT / "systemd" / name).read_text()
        (tmp_path / name).write_text(text.replace("/opt/crm-mailer/.venv/bin/crm-mailer",
                                                  str(command)))
    return tmp_path


@needs_analyze
def test_the_units_verify(tmp_path: Path) -> None:
    units = installed_units(tmp_path)
    result = subprocess.run([str(ANALYZE), "verify", *(str(units / n) for n in UNITS),
                             str(units / "crm-mailer-expire.timer")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "crm-mailer" not in result.stderr, result.stderr  # no warning about our units


@needs_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_the_units_are_sandboxed(unit: str) -> None:
    result = subprocess.run([str(ANALYZE), "security", "--offline=true",
                             str(ROOT / "systemd" / unit)],
                            capture_output=True, text=True, timeout=60, check=False)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


def test_the_service_notifies_and_keeps_the_capability_for_port_25() -> None:
    text = (ROOT / "systemd" / "crm-mailer.service").read_text()
    settings = dict(line.split("=", 1) for line in text.splitlines()
                    if "=" in line and not line.startswith("#"))
    assert settings["Type"] == "notify" and settings["NotifyAccess"] == "main"
    assert settings["AmbientCapabilities"] == settings["CapabilityBoundingSet"] \
        == "CAP_NET_BIND_SERVICE"
    assert settings["UMask"] == "0077"


def test_from_environment_takes_the_variables_out() -> None:
    environ = {"NOTIFY_SOCKET": "/run/notify", "WATCHDOG_USEC": "30000000",
               "WATCHDOG_PID": str(os.getpid()), "OTHER": "kept"}
    notifier = Notifier.from_environment(environ)
    assert (notifier.address, notifier.watchdog_usec) == ("/run/notify", 30_000_000)
    assert environ == {"OTHER": "kept"}  # a worker started now does not talk to systemd
    assert notifier.period == 10.0


def test_a_watchdog_meant_for_another_process_is_not_fed() -> None:
    environ = {"NOTIFY_SOCKET": "/run/notify", "WATCHDOG_USEC": "30000000",
               "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier.from_environment(environ).watchdog_usec is None


@pytest.mark.parametrize("usec", ["", "0", "-5", "abc", "3e7", "3_000_000", "\u00b2",
                                  "\u0663\u0660"])
def test_a_watchdog_interval_that_is_not_whole_microseconds_is_not_fed(usec: str) -> None:
    environ = {"NOTIFY_SOCKET": "/run/notify", "WATCHDOG_USEC": usec}
    notifier = Notifier.from_environment(environ)
    assert notifier.enabled and notifier.watchdog_usec is None
    assert environ == {}


def test_outside_systemd_nothing_is_sent() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.ready("serving") is False


def test_an_abstract_socket_is_reached() -> None:
    name = f"crm-mailer-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        assert Notifier("@" + name).status("serving")
        assert listener.recv(4096) == b"STATUS=serving"


def test_a_socket_that_is_gone_is_logged_not_raised(tmp_path: Path) -> None:
    assert Notifier(str(tmp_path / "gone")).watchdog() is False


async def test_status_follows_the_database_and_a_hung_check_counts_as_down(
        tmp_path: Path) -> None:
    answers = iter([True, True, False, "hang", True])

    async def database_answers() -> bool:
        answer = next(answers)
        if answer == "hang":
            await asyncio.sleep(60)
        return bool(answer)

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(tmp_path / "notify"))
        listener.settimeout(10)
        notifier = Notifier(str(tmp_path / "notify"), watchdog_usec=150_000)
        task = asyncio.create_task(keep_informed(notifier, database_answers))
        try:
            received = [await asyncio.to_thread(listener.recv, 4096) for _ in range(8)]
        finally:
            task.cancel()
    statuses = [line for line in received if line.startswith(b"STATUS=")]
    assert statuses == [b"STATUS=" + s.encode() for s in (SERVING, DATABASE_DOWN, SERVING)]
    assert received.count(b"WATCHDOG=1") == 5  # fed every round, the hung one too
