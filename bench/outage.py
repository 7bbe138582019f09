"""Fault injection: PostgreSQL, or the daemon itself, stops and restarts mid-delivery.

Starts a throwaway PostgreSQL cluster and `crm-mailer serve` on it, sends messages from
several client threads that behave like a relaying MTA (a 4xx reply or a dropped
connection means: try the same message again later), stops the database (`--fault
database`, pg_ctl -m immediate) or the daemon (`--fault daemon`, SIGTERM: it drains) for a
few seconds in the middle, then checks the promise: every message answered 250 is stored
exactly once. Prints the figures; exits 1 if a message was lost or doubled.

    .venv/bin/python bench/outage.py --messages 600 --concurrency 10 --down 3
    .venv/bin/python bench/outage.py --fault daemon
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.throughput import EXAMPLE, message  # noqa: E402
from tests.pgcluster import PgCluster, free_port  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--down", type=float, default=3.0, help="seconds the database is down")
    parser.add_argument("--after", type=float, default=2.0, help="seconds before it goes down")
    parser.add_argument("--fault", choices=("database", "daemon"), default="database")
    args = parser.parse_args()

    cluster = PgCluster()
    cluster.start()
    env = {**os.environ, "CRM_MAILER_DATABASE_URL": cluster.url,
           "CRM_MAILER_LOG_LEVEL": "warning"}
    command = [sys.executable, "-m", "crm_mailer"]
    port = free_port()
    server = None
    try:
        subprocess.run([*command, "db", "upgrade"], env=env, check=True, capture_output=True)
        subprocess.run([*command, "import", str(EXAMPLE)], env=env, check=True,
                       capture_output=True)
        def serve() -> subprocess.Popen[bytes]:
            return subprocess.Popen([*command, "serve", "--port", str(port)], env=env,
                                    stderr=subprocess.DEVNULL)

        server = serve()
        time.sleep(2)
        payloads = [message(i, 2000) for i in range(args.messages)]
        counts = {"250": 0, "4xx": 0, "dropped": 0, "other": 0}
        lock = threading.Lock()

        def deliver(raw: bytes) -> None:
            for attempt in range(200):
                try:
                    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                        client.ehlo("relay.bench")
                        client.mail("alice@xyz.de")
                        code, _ = client.rcpt("crm@xyz.hq.example")
                        if code == 250:
                            code, _ = client.data(raw)
                except (smtplib.SMTPException, OSError):
                    code = -1
                with lock:
                    key = ("250" if code == 250 else "4xx" if 400 <= code < 500
                           else "dropped" if code == -1 else "other")
                    counts[key] += 1
                if code == 250:
                    return
                if 500 <= code < 600:
                    return  # a bounce: counted, and the check below finds it missing
                time.sleep(min(0.1 * (attempt + 1), 1.0))

        def outage() -> None:
            nonlocal server
            time.sleep(args.after)
            if args.fault == "database":
                cluster.stop("immediate")
                time.sleep(args.down)
                cluster.start()
            else:
                assert server is not None
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=60)
                time.sleep(args.down)
                server = serve()

        started = time.perf_counter()
        fault = threading.Thread(target=outage)
        fault.start()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(deliver, payloads))
        fault.join()
        elapsed = time.perf_counter() - started

        async def stored() -> tuple[int, int]:
            connection = await asyncpg.connect(cluster.url)
            try:
                total = await connection.fetchval("SELECT count(*) FROM inbound_messages")
                distinct = await connection.fetchval(
                    "SELECT count(DISTINCT message_id) FROM inbound_messages")
                return int(total), int(distinct)
            finally:
                await connection.close()

        total, distinct = asyncio.run(stored())
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        cluster.destroy()

    lost = args.messages - distinct
    print(json.dumps({"messages": args.messages, "seconds": round(elapsed, 1),
                      "fault": args.fault, "down_seconds": args.down, "replies": counts,
                      "stored": total, "lost": lost, "duplicates": total - distinct}, indent=2))
    return 0 if lost == 0 and total == distinct else 1


if __name__ == "__main__":
    raise SystemExit(main())
