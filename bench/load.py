"""The load client of bench/throughput.py, run in its own process: SMTP sessions with
aiosmtplib, as fast as the server answers (peak) or paced at a fixed rate (latency).

    python bench/load.py --port 2525 --messages messages.pickle --sessions 20 [--reuse]
                         [--rate 100] > result.json

`messages.pickle` is a list of (envelope sender, recipient, message bytes) that
throughput.py wrote. Each message is made ready to send (CRLF line ends, dot-stuffed, the
final dot: aiosmtplib's own functions) before any is sent, so that the client's work per
message is the SMTP dialogue alone. Latency is the time from the end of the message data
to the reply: the clock starts when the whole message (after DATA's 354) is handed to the
socket, and stops at the reply. Prints one JSON object: elapsed seconds, replies by code,
the Message-IDs answered 250, and latency percentiles in milliseconds (p99 also by size).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([^>]+)>", re.IGNORECASE | re.MULTILINE)
Message = tuple[str, str, bytes]
Result = tuple[bytes, int | str, float, int]  # Message-ID, reply code, latency, bytes sent
# The mix is 2 to 200 KB: a tail that only the largest messages make shows here.
SIZE_CLASSES = ((0, "under 20 KB"), (20_000, "20 to 80 KB"), (80_000, "80 KB and more"))


@dataclass(frozen=True, slots=True)
class Ready:
    """A message as it goes on the wire after DATA's 354."""

    sender: str
    recipient: str
    data: bytes  # CRLF line ends, dot-stuffed, ending in the lone dot
    message_id: bytes


def ready(message: Message) -> Ready:
    sender, recipient, raw = message
    data = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(raw)) + b".\r\n"
    found = _MESSAGE_ID.search(raw[:4096])
    return Ready(sender, recipient, data, found.group(1) if found else b"")


async def deliver(client: aiosmtplib.SMTP, message: Ready) -> tuple[int, float]:
    """One transaction on an open session: the final reply code and its latency (from the
    end of the data to the reply; 0 for a refusal before the data)."""
    try:
        await client.mail(message.sender)
        await client.rcpt(message.recipient)
        reply = await client.execute_command(b"DATA")
        if reply.code != 354:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        # aiosmtplib's data() less its preparation of the bytes (done before the clock):
        # the protocol's own write and reply, one after the other in one step of the loop.
        protocol = client.protocol
        assert protocol is not None
        protocol.write(message.data)
        started = time.perf_counter()
        reply = await protocol.read_response(timeout=60)
        return reply.code, time.perf_counter() - started
    except aiosmtplib.SMTPResponseException as exc:
        if exc.code < 400 or exc.code >= 600:
            raise
        await client.rset()
        return exc.code, 0.0


async def session(port: int, queue: asyncio.Queue[tuple[float, Ready] | None], reuse: bool,
                  results: list[Result]) -> None:
    client: aiosmtplib.SMTP | None = None
    while (item := await queue.get()) is not None:
        due, message = item
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        try:
            if client is None or not client.is_connected:
                client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60)
                await client.connect()
            code, latency = await deliver(client, message)
            results.append((message.message_id, code, latency, len(message.data)))
        except (aiosmtplib.SMTPException, OSError) as exc:
            results.append((message.message_id, type(exc).__name__, 0.0, len(message.data)))
            client = None
        if not reuse and client is not None:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                pass
            client = None
    if client is not None and client.is_connected:
        await client.quit()


async def run(port: int, messages: list[Message], sessions: int, reuse: bool,
              rate: float | None) -> dict[str, object]:
    queue: asyncio.Queue[tuple[float, Ready] | None] = asyncio.Queue()
    prepared = [ready(message) for message in messages]
    start = time.perf_counter() + 0.05
    for index, message in enumerate(prepared):
        queue.put_nowait((start + index / rate if rate else 0.0, message))
    for _ in range(sessions):
        queue.put_nowait(None)
    results: list[Result] = []
    began = time.perf_counter()
    await asyncio.gather(*(session(port, queue, reuse, results) for _ in range(sessions)))
    elapsed = time.perf_counter() - began
    codes: dict[str, int] = {}
    for _, code, _, _ in results:
        codes[str(code)] = codes.get(str(code), 0) + 1
    latencies = [latency * 1000 for _, code, latency, _ in results if code == 250]
    cuts = percentiles(latencies)
    by_size = {label: percentiles([latency * 1000 for _, code, latency, size in results
                                   if code == 250 and size_class(size) == label])[98]
               for _, label in SIZE_CLASSES}
    return {"elapsed": elapsed, "messages": len(results), "codes": codes,
            "accepted": [m.decode() for m, code, _, _ in results if code == 250],
            "p50": cuts[49], "p95": cuts[94], "p99": cuts[98], "p99_by_size": by_size}


def percentiles(values: list[float]) -> list[float]:
    return statistics.quantiles(values, n=100) if len(values) >= 2 else [0.0] * 99


def size_class(size: int) -> str:
    """Where a message's latency is counted in the p99 by size."""
    return next(label for floor, label in reversed(SIZE_CLASSES) if size >= floor)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", type=Path, required=True)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--reuse", action="store_true", help="one connection per session")
    parser.add_argument("--rate", type=float, help="messages per second (paced); else peak")
    args = parser.parse_args()
    messages = pickle.loads(args.messages.read_bytes())
    result = asyncio.run(run(args.port, messages, args.sessions, args.reuse, args.rate))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
