"""Prometheus metrics, and the HTTP endpoint that serves them with /healthz and /readyz.

Off unless `metrics_listen` is set (e.g. "127.0.0.1:9125"): an address of its own, never
the SMTP port. With several workers, each writes its numbers to files in a directory the
supervisor creates (prometheus-client's multiprocess mode) and the supervisor serves
their sum; the environment variable that selects that mode is set before any worker starts.

- /metrics: the metrics below, in Prometheus' text format;
- /healthz: 200 while the process answers (it is alive);
- /readyz: 200 when the database answered the last check with the current schema, else 503.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

log = structlog.get_logger("crm_mailer.metrics")

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

# The process's own metrics. prometheus-client picks its storage (memory, or files in
# multiprocess mode) when this module is imported: a worker inherits the variable.
REGISTRY = CollectorRegistry(auto_describe=True)
MESSAGES = Counter("crm_mailer_messages", "Messages by what became of them, per tenant copy",
                   ["outcome"], registry=REGISTRY)
REPLIES = Counter("crm_mailer_replies", "SMTP replies by command and code",
                  ["command", "code"], registry=REGISTRY)
PROCESSING = Histogram("crm_mailer_processing_seconds",
                       "From the end of DATA to the reply (parse, match, store, commit)",
                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                       registry=REGISTRY)
# Set by the process that serves the endpoint (from the database), never by a worker: a
# registry of its own, served beside the workers' sum.
QUEUE_REGISTRY = CollectorRegistry(auto_describe=True)
PENDING = Gauge("crm_mailer_pending_waiting", "Mail waiting in the confirmation queue",
                ["tenant"], registry=QUEUE_REGISTRY)
DATABASE_ERRORS = Counter("crm_mailer_database_errors",
                          "Database failures answered with 451 (storage unavailable)",
                          registry=REGISTRY)
CONNECTIONS = Gauge("crm_mailer_connections", "Open SMTP connections",
                    multiprocess_mode="livesum", registry=REGISTRY)

OUTCOMES = ("filed", "queued", "ignored", "refused", "duplicate", "unprocessable")


def record_outcome(outcome: str) -> None:
    """One tenant copy's outcome; machine mail that was not kept counts as ignored."""
    MESSAGES.labels("ignored" if outcome == "discarded" else outcome).inc()


def record_reply(command: str, reply: str) -> None:
    REPLIES.labels(command, reply[:3]).inc()


def exposition() -> bytes:
    """What /metrics serves: this process's metrics, or in multiprocess mode every
    worker's summed; and the queue depth."""
    registry = REGISTRY
    if MULTIPROCESS_ENV in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry) + generate_latest(QUEUE_REGISTRY)


def forget_process(pid: int) -> None:
    """A worker died: its open connections no longer count (multiprocess mode)."""
    if MULTIPROCESS_ENV in os.environ:
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class MetricsServer:
    """The endpoint, in a thread of its own (scrapes never wait for the event loop)."""

    def __init__(self, address: tuple[str, int], ready: Callable[[], bool]) -> None:
        self.ready = ready
        self._server = ThreadingHTTPServer(address, self._handler())
        self._server.daemon_threads = True
        self.address = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="metrics", daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a scraper that stalls holds one thread for this long at most

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, exposition(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._send(200, b"ok\n")
                elif path == "/readyz":
                    ready = server.ready()
                    self._send(200 if ready else 503,
                               b"ready\n" if ready else b"database not ready\n")
                else:
                    self._send(404, b"not found: /metrics, /healthz, /readyz\n")

            def _send(self, status: int, body: bytes,
                      content_type: str = "text/plain; charset=utf-8") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the log

        return Handler

    def start(self) -> None:
        self._thread.start()
        log.info("metrics.listening", host=self.address[0], port=self.address[1])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
