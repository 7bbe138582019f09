"""The ceiling of crm_mailer's stack: a bare aiosmtpd server that answers 250 at once.

    python bench/bare_smtpd.py --port 2526 [--event-loop uvloop|asyncio]

Every recipient is accepted and every message answered 250 without being read: what
aiosmtpd and asyncio cost alone, on the same machine and under the same load as the
daemon (bench/throughput.py runs both in alternating rounds, on the same event loop).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from aiosmtpd.smtp import SMTP


class Accept:
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Accept(), data_size_limit=33_554_432, enable_SMTPUTF8=True,
                     decode_data=False), "127.0.0.1", port, reuse_address=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="the daemon's `event_loop`; uvloop is its default")
    args = parser.parse_args()
    factory = None
    if args.event_loop == "uvloop":
        import uvloop
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
