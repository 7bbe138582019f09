"""Throughput and latency of the whole path: SMTP in, matched, committed, 250 out.

Starts `crm-mailer serve` as a separate process on a fresh database (embedded SQLite by
default, or --database-url), loads the README example, and sends messages from a pool
of client threads. Prints messages per second and latency percentiles; asserts nothing.

    .venv/bin/python bench/throughput.py --messages 2000 --concurrency 20 [--reuse]
    .venv/bin/python bench/throughput.py --database-url postgresql://postgres@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "example-directory.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def message(index: int, size: int) -> bytes:
    mail = EmailMessage()
    mail["From"] = "Alice <alice@xyz.de>"
    mail["To"] = "bob@acme.com"
    mail["Subject"] = "XYZ Lead 11111" if index % 2 else "Rückfrage ohne Nummer"
    mail["Message-ID"] = f"<bench-{index}-{time.time_ns()}@xyz.de>"
    mail.set_content(("Hallo Bob, " * (size // 11 + 1))[:size])
    return mail.as_bytes()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--size", type=int, default=4000, help="body bytes per message")
    parser.add_argument("--reuse", action="store_true", help="one connection per client thread")
    parser.add_argument("--database-url", default="", help="default: embedded SQLite in a temp dir")
    args = parser.parse_args()

    state = tempfile.mkdtemp(prefix="crm-mailer-bench-")
    env = {**os.environ, "XDG_STATE_HOME": state, "CRM_MAILER_LOG_LEVEL": "warning"}
    if args.database_url:
        env["CRM_MAILER_DATABASE_URL"] = args.database_url
    command = [sys.executable, "-m", "crm_mailer"]
    subprocess.run([*command, "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run([*command, "import", str(EXAMPLE)], env=env, check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen([*command, "serve", "--port", str(port)], env=env,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        payloads = [message(i, args.size) for i in range(args.messages)]
        latencies: list[float] = []
        codes: dict[int, int] = {}
        lock = threading.Lock()
        local = threading.local()

        def send(raw: bytes) -> None:
            started = time.perf_counter()
            client = getattr(local, "client", None) if args.reuse else None
            if client is None:
                client = smtplib.SMTP("127.0.0.1", port, timeout=60)
                client.ehlo("bench")
                local.client = client
            client.mail("alice@xyz.de")
            client.rcpt("crm@xyz.hq.example")
            code, _ = client.data(raw)
            if not args.reuse:
                client.quit()
                local.client = None
            with lock:
                latencies.append(time.perf_counter() - started)
                codes[code] = codes.get(code, 0) + 1

        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(send, payloads))
        elapsed = time.perf_counter() - started
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    latencies.sort()
    quantiles = statistics.quantiles(latencies, n=100)
    print(json.dumps({
        "backend": "postgresql" if args.database_url else "sqlite",
        "messages": args.messages, "concurrency": args.concurrency, "reuse": args.reuse,
        "size": args.size, "seconds": round(elapsed, 2),
        "messages_per_second": round(args.messages / elapsed, 1),
        "latency_ms": {name: round(value * 1000, 1) for name, value in (
            ("p50", quantiles[49]), ("p95", quantiles[94]), ("p99", quantiles[98]),
            ("max", latencies[-1]))},
        "replies": codes,
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
