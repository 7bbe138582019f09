"""`crm-mailer serve`: the SMTP server, its worker processes, systemd notify and the
metrics endpoint."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_mailer.cli import arguments
from crm_mailer.db import migrate
from crm_mailer.db.engine import session_factory
from crm_mailer.errors import CrmMailerError
from crm_mailer.metrics import MULTIPROCESS_ENV, MetricsServer
from crm_mailer.settings import Settings, parse_listen
from crm_mailer.smtp.monitoring import Monitor
from crm_mailer.smtp.readiness import SchemaWatch
from crm_mailer.smtp.server import SmtpServer
from crm_mailer.smtp.workers import Supervisor, WorkerPipes, reserve, worker_command
from crm_mailer.systemd import (
    DATABASE_DOWN,
    SERVING,
    Notifier,
    start_informing,
    stop_informing,
)

log = structlog.get_logger("crm_mailer.cli")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve", help="run the SMTP server",
        description="Run the SMTP server: accept crm@<tenant host>, file or queue each "
                    "message, answer 250 only once it is stored. Starts without its "
                    "database (451 until it answers); SIGTERM drains, SIGHUP reloads TLS.")
    serve.add_argument("--host", help="listen address (config: listen_host)")
    serve.add_argument("--port", type=arguments.port, help="listen port, 0 for any free one "
                       "(config: listen_port)")
    serve.add_argument("--workers", type=arguments.workers, metavar="N|auto",
                       help="SMTP worker processes on the port (config: workers)")
    serve.add_argument("--worker-pipes", help=argparse.SUPPRESS)  # set by the supervisor
    # The schema is checked by serve itself: it starts without the database (smtp.readiness).
    serve.set_defaults(run=_serve, schema=False)


async def _serve(args: argparse.Namespace, settings: Settings, engine: AsyncEngine) -> int:
    host = args.host or settings.listen_host
    port = settings.listen_port if args.port is None else args.port
    count = args.workers or settings.workers
    notifier = Notifier.from_environment()  # taken out of the environment the workers get
    watch = SchemaWatch(engine)
    if settings.uses_embedded_database:
        await migrate.upgrade(engine)  # a local file: no reason to start without it
        watch.ready = True
    if not watch.ready:
        await watch.start()  # raises SchemaOutdated if the database answers with another
    if count > 1:
        try:
            return await _supervise(args, settings, host, port, count, notifier, watch,
                                    engine)
        finally:
            await watch.stop()
    pipes = WorkerPipes(args.worker_pipes) if args.worker_pipes else None
    server = SmtpServer(settings, session_factory(engine), ready=lambda: watch.ready)
    try:
        await server.start(host, port, reuse_port=pipes is not None)
    except OSError as exc:
        await watch.stop()
        raise CrmMailerError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    stop = asyncio.Event()
    if pipes is not None:
        pipes.report_ready()
        pipes.on_supervisor_gone(stop)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # SIGHUP reloads the TLS certificate and key (and must never end the daemon).
    loop.add_signal_handler(signal.SIGHUP, server.reload_tls)
    informing = start_informing(notifier, SERVING if watch.ready else DATABASE_DOWN,
                                watch.answers)
    # A worker's metrics go to the supervisor's endpoint (multiprocess files).
    async with _metrics(settings, engine, watch, serve=pipes is None):
        await stop.wait()
        log.info("smtp.shutdown_requested")
        notifier.stopping()
    await stop_informing(informing)
    await watch.stop()
    await server.stop()
    return 0


@contextlib.asynccontextmanager
async def _metrics(settings: Settings, engine: AsyncEngine, watch: SchemaWatch, *,
                   serve: bool) -> AsyncIterator[None]:
    """The metrics endpoint and its database checks, while the block runs (if configured)."""
    if not (settings.metrics_listen and serve):
        yield
        return
    monitor = Monitor(session_factory(engine), watch)
    try:
        exporter = MetricsServer(parse_listen(settings.metrics_listen), monitor.ready)
    except OSError as exc:
        raise CrmMailerError(f"cannot listen on {settings.metrics_listen} (metrics_listen): "
                             f"{exc.strerror}") from None
    exporter.start()
    checking = asyncio.create_task(monitor.run(), name="monitor")
    try:
        yield
    finally:
        checking.cancel()
        await asyncio.gather(checking, return_exceptions=True)
        exporter.stop()


async def _supervise(args: argparse.Namespace, settings: Settings, host: str, port: int,
                     count: int, notifier: Notifier, watch: SchemaWatch,
                     engine: AsyncEngine) -> int:
    try:
        reserved = reserve(host, port)
    except OSError as exc:
        raise CrmMailerError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    with reserved:
        port = reserved.getsockname()[1]
        log.info("smtp.supervising", host=host, port=port, workers=count)
        supervisor = Supervisor(worker_command(args.config, host, port), count,
                                grace=settings.shutdown_timeout)
        informing: list[asyncio.Task[None] | None] = []

        def ready() -> None:
            informing.append(start_informing(notifier, f"{count} workers listening",
                                             watch.answers))
        with _multiprocess_metrics(enabled=bool(settings.metrics_listen)):
            try:
                async with _metrics(settings, engine, watch, serve=True):
                    return await supervisor.run(on_ready=ready,
                                                on_stopping=notifier.stopping)
            finally:
                for task in informing:
                    await stop_informing(task)


@contextlib.contextmanager
def _multiprocess_metrics(*, enabled: bool) -> Iterator[None]:
    """The workers write their metrics to files in a fresh directory (set in the
    environment before they start), which the supervisor's endpoint sums."""
    if not enabled:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="crm-mailer-metrics-") as directory:
        os.environ[MULTIPROCESS_ENV] = directory
        try:
            yield
        finally:
            del os.environ[MULTIPROCESS_ENV]
