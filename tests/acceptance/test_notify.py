"""`serve` speaks systemd's notify protocol to a socket the test owns, as systemd would see it:
READY once the port answers, STATUS, the watchdog, STOPPING; with workers, only the main
process speaks (NotifyAccess=main), which the kernel's sender credentials prove."""

from __future__ import annotations

import signal
import smtplib
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.test_cli import ROOT, cli_env
from tests.pgcluster import free_port

UCRED = struct.Struct("3i")  # pid, uid, gid


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(20)
        yield sock


def receive(sock: socket.socket) -> tuple[int, list[str]]:
    """One datagram: the sender's pid (from the kernel) and its lines."""
    data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(UCRED.size))
    pid = next(UCRED.unpack(payload[:UCRED.size])[0] for level, kind, payload in ancillary
               if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS)
    return pid, data.decode().splitlines()


def until(sock: socket.socket, line: str, seen: list[tuple[int, list[str]]]) -> None:
    while True:
        pid, lines = receive(sock)
        seen.append((pid, lines))
        if line in lines:
            return


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_notifies_ready_status_watchdog_and_stopping(
        tmp_path: Path, notify_socket: socket.socket, workers: str) -> None:
    port = free_port()
    env = cli_env(tmp_path, NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="300000")
    process = subprocess.Popen(
        [sys.executable, "-m", "crm_mailer", "serve", "--port", str(port), "--workers", workers],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: list[tuple[int, list[str]]] = []
    try:
        until(notify_socket, "READY=1", seen)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:  # READY means listening
            assert client.noop()[0] == 250
        ready = seen[-1][1]
        assert f"MAINPID={process.pid}" in ready
        feeds = time.monotonic()
        for _ in range(3):
            until(notify_socket, "WATCHDOG=1", seen)
        assert time.monotonic() - feeds < 2  # every 0.1 s, a third of WatchdogSec
        assert any("STATUS=serving; database reachable" in lines for _, lines in seen)
        process.send_signal(signal.SIGTERM)
        until(notify_socket, "STOPPING=1", seen)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.wait()
    assert {pid for pid, _ in seen} == {process.pid}  # never a worker
