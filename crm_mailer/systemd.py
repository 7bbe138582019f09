"""systemd's notify protocol (sd_notify(3)): READY, STATUS, STOPPING and the watchdog.

The protocol is one datagram of `KEY=value` lines to the socket in $NOTIFY_SOCKET; no
library is needed for that. Outside systemd (no $NOTIFY_SOCKET) every call does nothing.

The watchdog is fed while the event loop turns. It is not tied to the database: a
restart cannot bring a database back, and serve is built to answer 451 through an
outage (smtp.readiness) rather than be killed and restarted every WatchdogSec. The
database's state goes to STATUS instead, where `systemctl status` shows it.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, MutableMapping

import structlog

from crm_mailer.numbers import is_digits

log = structlog.get_logger("crm_mailer.systemd")

SERVING = "serving; database reachable"
DATABASE_DOWN = "database unavailable: answering 451"
STATUS_EVERY = 10.0  # seconds between database checks when no watchdog asks for more


class Notifier:
    """Sends to systemd's notify socket; does nothing when there is none."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """Take the socket and watchdog from the environment and remove them, so that no
        child process (a worker) talks to systemd in the main process's name."""
        environ = os.environ if environ is None else environ
        address = environ.pop("NOTIFY_SOCKET", None) or None
        usec = environ.pop("WATCHDOG_USEC", None)
        pid = environ.pop("WATCHDOG_PID", None)
        watchdog = int(usec) if usec and is_digits(usec) and int(usec) > 0 else None
        if pid is not None and pid != str(os.getpid()):
            watchdog = None  # meant for another process
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """One datagram of `KEY=value` lines; False if it could not be sent (logged)."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)  # never wait for systemd on the event loop
                sock.sendto("\n".join(assignments).encode(), target)
        except OSError as exc:
            log.warning("systemd.notify_failed", error=str(exc), sent=list(assignments))
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=draining: new mail gets 421")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    @property
    def period(self) -> float:
        """Seconds between watchdog feeds: a third of WatchdogSec, so two may be late."""
        if self.watchdog_usec is None:
            return STATUS_EVERY
        return self.watchdog_usec / 1_000_000 / 3


async def keep_informed(notifier: Notifier,
                        database_answers: Callable[[], Awaitable[bool]]) -> None:
    """Tell STATUS whether the database answers, now and whenever that changes, and feed
    the watchdog, every period until cancelled. A check that hangs counts as no answer."""
    reachable: bool | None = None
    while True:
        try:
            now = await asyncio.wait_for(database_answers(), notifier.period)
        except TimeoutError:
            now = False
        if now != reachable:
            reachable = now
            notifier.status(SERVING if now else DATABASE_DOWN)
        if notifier.watchdog_usec is not None:
            notifier.watchdog()
        await asyncio.sleep(notifier.period)


def start_informing(notifier: Notifier, status: str,
                    database_answers: Callable[[], Awaitable[bool]]) -> asyncio.Task[None] | None:
    """READY=1 with `status`, then keep_informed in a task (None outside systemd)."""
    if not notifier.enabled:
        return None
    notifier.ready(status)
    return asyncio.create_task(keep_informed(notifier, database_answers), name="systemd")


async def stop_informing(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
