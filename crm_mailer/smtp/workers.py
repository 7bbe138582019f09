"""Worker processes: N copies of the SMTP server on one port, started and kept by `serve`.

Each worker is `crm-mailer serve` itself, on its own event loop and database pool,
listening with SO_REUSEPORT: the kernel spreads new connections over the workers, so one
busy or dying process never holds up the others. The supervisor (the process systemd
started) serves no mail. It

- binds the address first, without listening: a bad address fails at once, port 0 is
  resolved to one port for all, and the port stays reserved while workers restart;
- starts the workers and waits until each reports that it listens;
- restarts a worker that dies (logged, with a growing pause if it keeps dying at once);
- passes SIGTERM and SIGINT on (each worker drains as a single server does) and SIGHUP
  (TLS reload), and ends when they have;
- holds the write end of a pipe each worker watches: if the supervisor is killed, the
  workers see the pipe close and drain, instead of serving on unsupervised.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from crm_mailer import metrics

log = structlog.get_logger("crm_mailer.smtp")

READY = b"ready\n"
START_TIMEOUT = 60.0  # seconds a worker has to listen (its imports, the schema check)
QUICK_DEATH = 5.0  # a worker that dies sooner after its start is restarted after a pause
MAX_PAUSE = 30.0


def reserve(host: str, port: int) -> socket.socket:
    """Bind the address with SO_REUSEPORT, not listening: it fails as a worker would, and
    keeps a port (chosen by the kernel for port 0) for the workers to bind again."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class Worker:
    number: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    quick_deaths: int = 0


class Supervisor:
    """Start `count` workers running `command` (plus the pipe arguments) and keep them."""

    def __init__(self, command: Sequence[str], count: int, grace: float) -> None:
        self.command = list(command)
        self.workers = [Worker(number) for number in range(1, count + 1)]
        self.grace = grace
        self.stopping = asyncio.Event()
        self._lifeline_read, self._lifeline_write = os.pipe()

    async def run(self, on_ready: Callable[[], object] = lambda: None,
                  on_stopping: Callable[[], object] = lambda: None) -> int:
        """Serve until SIGTERM or SIGINT; 1 if the workers could not start. `on_ready` runs
        once every worker listens, `on_stopping` when the drain begins (systemd)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._signal_all, signal.SIGHUP)
        try:
            try:
                await asyncio.gather(*(self._start(worker) for worker in self.workers))
            except (OSError, RuntimeError) as exc:
                log.error("smtp.workers_failed", error=str(exc))
                return 1
            log.info("smtp.workers_ready", workers=len(self.workers),
                     pids=[w.process.pid for w in self.workers if w.process])
            keepers = [asyncio.create_task(self._keep(worker)) for worker in self.workers]
            on_ready()
            await self.stopping.wait()
            log.info("smtp.workers_stopping")
            on_stopping()
            for task in keepers:
                task.cancel()
            return 0
        finally:
            await self._stop_all()
            os.close(self._lifeline_write)
            os.close(self._lifeline_read)

    async def _start(self, worker: Worker) -> None:
        ready_read, ready_write = os.pipe()
        try:
            worker.process = await asyncio.create_subprocess_exec(
                *self.command, "--worker-pipes", f"{self._lifeline_read},{ready_write}",
                pass_fds=(self._lifeline_read, ready_write), stdin=asyncio.subprocess.DEVNULL)
        finally:
            os.close(ready_write)
        worker.started = time.monotonic()
        try:
            reported = await asyncio.wait_for(_read_all(ready_read), START_TIMEOUT)
        except TimeoutError:
            reported = b""
        if reported != READY:
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
            code = await worker.process.wait()
            raise RuntimeError(f"worker {worker.number} did not start listening "
                               f"(exit status {code})")
        log.info("smtp.worker_started", worker=worker.number, pid=worker.process.pid)

    async def _keep(self, worker: Worker) -> None:
        """Wait for the worker to end; unless everything stops, start it again."""
        while True:
            assert worker.process is not None
            code = await worker.process.wait()
            if self.stopping.is_set():
                return
            lived = time.monotonic() - worker.started
            worker.quick_deaths = worker.quick_deaths + 1 if lived < QUICK_DEATH else 0
            log.warning("smtp.worker_died", worker=worker.number, pid=worker.process.pid,
                        exit_status=code, lived_seconds=round(lived, 1))
            metrics.forget_process(worker.process.pid)
            while True:
                await asyncio.sleep(min(MAX_PAUSE, 2.0 ** worker.quick_deaths - 1))
                try:
                    await self._start(worker)
                    break
                except (OSError, RuntimeError) as exc:
                    worker.quick_deaths += 1
                    log.error("smtp.worker_restart_failed", worker=worker.number,
                              error=str(exc))

    def _signal_all(self, sig: int) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(sig)

    async def _stop_all(self) -> None:
        """SIGTERM to every worker, which drains; SIGKILL to one still there after the grace."""
        self._signal_all(signal.SIGTERM)
        running = [w.process for w in self.workers
                   if w.process is not None and w.process.returncode is None]
        if not running:
            return
        _, pending = await asyncio.wait([asyncio.create_task(p.wait()) for p in running],
                                        timeout=self.grace + 10)
        if pending:
            log.warning("smtp.workers_killed", workers=len(pending))
            for process in running:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            await asyncio.wait(pending)


async def _read_all(fd: int) -> bytes:
    """Everything written to the pipe until its last writer closes it; closes `fd`."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
    try:
        return await reader.read()
    finally:
        transport.close()


def worker_command(config: str | None, host: str, port: int) -> list[str]:
    """How the supervisor runs one worker: this same program, serving alone."""
    command = [sys.executable, "-m", "crm_mailer"]
    if config:
        command += ["--config", config]
    return [*command, "serve", "--host", host, "--port", str(port), "--workers", "1"]


class WorkerPipes:
    """The worker's side: tell the supervisor it listens; notice when the supervisor is gone."""

    def __init__(self, spec: str) -> None:
        lifeline, ready = (int(fd) for fd in spec.split(","))
        self.lifeline, self.ready = lifeline, ready

    def report_ready(self) -> None:
        os.write(self.ready, READY)
        os.close(self.ready)

    def on_supervisor_gone(self, stop: asyncio.Event) -> None:
        """Set `stop` when the supervisor's end of the lifeline closes (it died)."""
        loop = asyncio.get_running_loop()

        def readable() -> None:
            if not os.read(self.lifeline, 1):  # EOF: no writer is left
                loop.remove_reader(self.lifeline)
                stop.set()  # first: the log may be gone with the supervisor (EPIPE)
                log.warning("smtp.supervisor_gone")

        loop.add_reader(self.lifeline, readable)
