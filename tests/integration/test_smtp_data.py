"""The DATA reader: the same bytes aiosmtpd 1.4.6 would hand over, in one buffer.

Every payload goes over real sockets to two servers side by side, aiosmtpd's own SMTP and
crm_mailer's, each with a handler that keeps what it is given; reply codes and bytes must
be the same. Then the memory: tracemalloc's peak while a large message is received.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from typing import BinaryIO

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from crm_mailer.settings import Settings
from crm_mailer.smtp import data
from crm_mailer.smtp.data import read_message
from crm_mailer.smtp.handler import IngestHandler
from crm_mailer.smtp.server import SmtpServer
from tests.integration.smtp_clients import RawClient, dotted

MAX_SIZE = 4096
MAX_LINE = 1001  # aiosmtpd's default, the smallest the settings allow


class Keeper(IngestHandler):
    """A handler that accepts any recipient and keeps each message's bytes (and tracemalloc's
    figures when it got them): no database, nothing but the reader under test."""

    def __init__(self) -> None:
        super().__init__(None, "crm")  # type: ignore[arg-type]
        self.messages: list[bytes] = []
        self.memory: list[tuple[int, int]] = []

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if tracemalloc.is_tracing():
            self.memory.append(tracemalloc.get_traced_memory())
        assert isinstance(envelope.original_content, bytes)
        assert envelope.content is envelope.original_content  # decode_data=False: bytes, once
        self.messages.append(envelope.original_content)
        return "250 2.0.0 kept"


class StockSMTP(SMTP):
    line_length_limit = MAX_LINE


@dataclasses.dataclass
class Side:
    """One server and what its handler kept."""

    port: int
    keeper: Keeper

    async def exchange(self, payload: bytes) -> tuple[int, bytes | None, int]:
        """DATA with this exact payload: the reply code, the bytes kept, the NOOP after."""
        client = await RawClient.connect("127.0.0.1", self.port)
        try:
            await client.greeted()
            await client.start_data()
            assert (await client.reply()).code == 354
            kept_before = len(self.keeper.messages)
            client.send(payload)
            code = (await client.reply()).code
            kept = self.keeper.messages[-1] if len(self.keeper.messages) > kept_before else None
            return code, kept, (await client.command("NOOP")).code
        finally:
            client.close()


@pytest.fixture
async def sides(settings: Settings) -> AsyncIterator[tuple[Side, Side]]:
    """aiosmtpd's stock SMTP and crm_mailer's, with the same size and line limits."""
    stock_keeper, our_keeper = Keeper(), Keeper()
    stock = await asyncio.get_running_loop().create_server(
        lambda: StockSMTP(stock_keeper, data_size_limit=MAX_SIZE, enable_SMTPUTF8=True,
                          decode_data=False, hostname="stock.test"),
        "127.0.0.1", 0)
    ours = SmtpServer(dataclasses.replace(settings, max_message_size=MAX_SIZE,
                                          max_line_length=MAX_LINE), None)  # type: ignore[arg-type]
    ours.handler = our_keeper  # type: ignore[assignment]
    _, port = await ours.start()
    yield (Side(stock.sockets[0].getsockname()[1], stock_keeper), Side(port, our_keeper))
    stock.close()
    await ours.stop(grace=1)


def body(*lines: bytes) -> bytes:
    return b"".join(lines) + b".\r\n"


CASES: dict[str, bytes] = {
    "empty message": b".\r\n",
    "plain lines": body(b"Subject: hi\r\n", b"\r\n", b"Hallo Bob,\r\n"),
    "dot-stuffed lines": body(b"..\r\n", b"..leading dot\r\n", b"...two\r\n", b". \r\n"),
    "dot not at the start": body(b"a.\r\n", b"a\r\n.\n", b"x.\r\n"),
    "bare LF and CR are data": body(b"one\ntwo\rthree\r\n", b"\n\r\n", b"\r\r\n"),
    "8-bit, UTF-8 and NUL": body("Grüße\r\n".encode(), b"\xff\xfe\x00\r\n", b"\x00.\r\n"),
    "a lone dot with LF only is data": body(b".\n", b"tail\r\n"),
    "line of MAX_LINE - 2 octets": body(b"x" * (MAX_LINE - 2) + b"\r\n"),
    "line of MAX_LINE - 1 octets": body(b"x" * (MAX_LINE - 1) + b"\r\n"),
    "line of MAX_LINE octets": body(b"x" * MAX_LINE + b"\r\n"),
    "line far too long": body(b"a\r\n", b"y" * (3 * MAX_LINE) + b"\r\n", b"b\r\n"),
    "long line ending in a lone dot": body(b"z" * (2 * MAX_LINE), b".\r\n", b"after\r\n"),
    "size exactly the limit": body(*[b"s" * 998 + b"\r\n"] * 4,
                                   b"s" * (MAX_SIZE - 4 * 1000 - 2) + b"\r\n"),
    "size one over the limit": body(*[b"s" * 998 + b"\r\n"] * 4,
                                    b"s" * (MAX_SIZE - 4 * 1000 - 1) + b"\r\n"),
    "far too much": body(*[b"m" * 998 + b"\r\n"] * 12),
    "too much and a line too long": body(*[b"m" * 998 + b"\r\n"] * 5, b"L" * 5000 + b"\r\n"),
    "a line too long, then too much": body(b"L" * 5000 + b"\r\n", *[b"m" * 998 + b"\r\n"] * 5),
    "stuffing dots count towards the size": body(*[b"." * 998 + b"\r\n"] * 4,
                                                 b"." * (MAX_SIZE - 4 * 1000 - 2) + b"\r\n"),
    "stuffing dots over the size": body(*[b"." * 998 + b"\r\n"] * 4,
                                        b"." * (MAX_SIZE - 4 * 1000 - 1) + b"\r\n"),
    "an unstuffed leading dot (a client's bug) is removed too": body(b".abc\r\n", b".\r\r\n"),
    # The line that crosses the size limit is also too long: which limit is named depends
    # on how much longer (aiosmtpd's stream refuses a line past its limit as it reads it).
    "crossing the size with a line one octet too long": body(
        *[b"s" * 998 + b"\r\n"] * 4, b"L" * (MAX_LINE - 1) + b"\r\n"),
    "crossing the size with a line two octets too long": body(
        *[b"s" * 998 + b"\r\n"] * 4, b"L" * MAX_LINE + b"\r\n"),
    "crossing the size with a line three octets too long": body(
        *[b"s" * 998 + b"\r\n"] * 4, b"L" * (MAX_LINE + 1) + b"\r\n"),
    "lines ending in a dot": body(b"Gruss.\r\n", b"a.\r\n", b"..\r\n", b"x\r.\r\n"),
    "a CR before the final CRLF": body(b"abc\r\r\n"),
    "more than the stream's limit of short lines, a dot within one": body(
        *[b"ab\r\n"] * 300, b"c.d\r\n", b"..e\r\n"),
}


def random_payloads(count: int, seed: int = 7) -> list[bytes]:
    """Messages made of the pieces the reader must tell apart, in random order and number,
    dot-stuffed as a client sends them."""
    pieces = [b".", b"..", b"\r", b"\n", b"\r\n", b"a", b"\xff", b"\x00", b" ",
              b"x" * 300, b"y" * 1000]
    chooser = random.Random(seed)
    payloads = []
    for _ in range(count):
        text = b"".join(chooser.choice(pieces) for _ in range(chooser.randint(0, 60)))
        payloads.append(dotted(text))
    return payloads


@pytest.mark.parametrize("case", CASES)
async def test_reader_hands_over_the_bytes_aiosmtpd_would(
        sides: tuple[Side, Side], case: str) -> None:
    stock, ours = sides
    expected = await stock.exchange(CASES[case])
    assert await ours.exchange(CASES[case]) == expected


async def test_reader_agrees_with_aiosmtpd_on_random_messages(
        sides: tuple[Side, Side]) -> None:
    stock, ours = sides
    for payload in random_payloads(300):
        assert await ours.exchange(payload) == await stock.exchange(payload), payload


async def read_fed(payload: bytes, sizes: Iterator[int] | None) -> tuple[object, bytes]:
    """What read_message makes of `payload` fed to its stream in pieces of `sizes` (all at
    once for None), the loop running between pieces; and the line after the payload,
    which it must leave in the stream (a client's next command)."""
    reader = asyncio.StreamReader(limit=MAX_LINE)  # as aiosmtpd makes it
    stream = payload + b"NEXT\r\n"

    async def feed() -> None:
        at = 0
        while at < len(stream):
            step = len(stream) if sizes is None else next(sizes)
            reader.feed_data(stream[at:at + step])
            at += step
            await asyncio.sleep(0)
        reader.feed_eof()

    feeding = asyncio.ensure_future(feed())
    result = await read_message(reader, max_size=MAX_SIZE, max_line_length=MAX_LINE)
    after = await reader.readuntil(b"\r\n")
    await feeding
    return result, after


@pytest.fixture(params=["batched", "piece by piece"])
def batching(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader hands pieces on in batches; one by one, every cut between pieces reaches
    the code that finds lines (a batch of small payloads would join them all)."""
    if request.param == "piece by piece":
        monkeypatch.setattr(data, "BATCH_PIECES", 1)


@pytest.mark.parametrize("seed", range(4))
async def test_how_the_data_arrives_changes_nothing(seed: int, batching: None) -> None:
    """The reader takes what the stream holds, so it meets every way the bytes can be cut:
    a piece may end inside a CRLF, inside the final ".CRLF" or just after a line's dot."""
    chooser = random.Random(seed)
    for payload in [*CASES.values(), *random_payloads(100, seed=seed + 100)]:
        whole = await read_fed(payload, None)
        assert whole[1] == b"NEXT\r\n"
        small = iter(lambda: chooser.randint(1, 7), None)
        large = iter(lambda: chooser.randint(1, 3000), None)
        assert await read_fed(payload, small) == whole, payload
        assert await read_fed(payload, large) == whole, payload


CUTS = {  # payload, where its first piece ends: where a piece can end that matters
    "between the CR and the LF of a CRLF, a stuffed dot behind": (
        b"ab\r\n" * 300 + b"..e\r\n.\r\n", 1202),
    "just before a dot inside a line": (b"ab\r\n" * 300 + b"c.d\r\n.\r\n", 1203),
    "between the CRLF and the dot of the end": (b"ab\r\n" * 300 + b".\r\n", 1200),
    "inside the end's CRLF": (b"ab\r\n" * 300 + b".\r\n", 1202),
    "after the end's dot": (b"ab\r\n" * 300 + b".\r\n", 1201),
    "before the CRLF that brings a message to exactly the size limit": (
        CASES["size exactly the limit"], len(CASES["size exactly the limit"]) - 3),
    "before the CRLF that takes a message one over the size limit": (
        CASES["size one over the limit"], len(CASES["size one over the limit"]) - 3),
}


@pytest.mark.parametrize("cut", CUTS)
async def test_a_piece_may_end_anywhere(cut: str, batching: None) -> None:
    """More than the stream's limit with no ".CRLF" in it is taken as it is, up to the last
    two bytes: cut so, a piece ends where these payloads need the next one to tell."""
    payload, first = CUTS[cut]
    whole = await read_fed(payload, None)
    assert whole[1] == b"NEXT\r\n"
    assert await read_fed(payload, iter([first, len(payload)])) == whole


async def test_fed_whole_the_reader_agrees_with_aiosmtpd(sides: tuple[Side, Side]) -> None:
    """The pieces above are compared with the whole; the whole, with aiosmtpd."""
    stock, _ = sides
    cut = [payload for payload, _ in CUTS.values()]
    for payload in [*CASES.values(), *cut, *random_payloads(100, seed=100)]:
        code, kept, _ = await stock.exchange(payload)
        result, _ = await read_fed(payload, None)
        assert (kept if code == 250 else code) == \
            (result if isinstance(result, bytes) else int(result.value[:3])), payload


async def test_cases_cover_every_outcome(sides: tuple[Side, Side]) -> None:
    stock, _ = sides
    codes = {(await stock.exchange(payload))[0] for payload in CASES.values()}
    assert codes == {250, 500, 552}


async def test_over_a_limit_ours_names_it_with_an_enhanced_code(
        sides: tuple[Side, Side]) -> None:
    _, ours = sides
    for payload, expected in ((CASES["far too much"], "552 5.3.4 "),
                              (CASES["line far too long"], "500 5.6.0 ")):
        client = await RawClient.connect("127.0.0.1", ours.port)
        await client.greeted()
        await client.start_data()
        assert (await client.reply()).code == 354
        client.send(payload)
        assert str(await client.reply()).startswith(expected)
        client.close()


# --- memory ---------------------------------------------------------------------------------

MESSAGE_SIZE = 4 * 2**20


async def peak_while_receiving(port: int, keeper: Keeper, payload: bytes) -> float:
    """tracemalloc's peak while the server received `payload`, per byte of the message."""

    def send() -> None:  # a blocking socket in a thread: sendall copies nothing
        with socket.create_connection(("127.0.0.1", port)) as sock:
            stream = sock.makefile("rb")
            for command in (b"", b"EHLO client.test\r\n", b"MAIL FROM:<alice@xyz.de>\r\n",
                            b"RCPT TO:<crm@xyz.hq.example>\r\n", b"DATA\r\n"):
                sock.sendall(command)
                while (line := stream.readline())[3:4] == b"-":
                    pass
            assert line.startswith(b"354"), line
            sock.sendall(memoryview(payload))
            assert stream.readline().startswith(b"250")

    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        await asyncio.to_thread(send)
    finally:
        tracemalloc.stop()
    [(_, peak)] = keeper.memory
    return (peak - before) / MESSAGE_SIZE


def big_message() -> bytes:
    """MESSAGE_SIZE bytes in lines of 78, as base64 attachments come."""
    line = b"x" * 76 + b"\r\n"
    return line * (MESSAGE_SIZE // len(line)) + b"x" * (MESSAGE_SIZE % len(line) - 2) + b"\r\n"


@pytest.mark.timeout(60)
async def test_receiving_peaks_below_twice_the_message_size(settings: Settings) -> None:
    message = big_message()
    payload = message + b".\r\n"
    keeper = Keeper()
    server = SmtpServer(dataclasses.replace(settings, max_message_size=2 * MESSAGE_SIZE),
                        None)  # type: ignore[arg-type]
    server.handler = keeper  # type: ignore[assignment]
    _, port = await server.start()
    try:
        peak = await peak_while_receiving(port, keeper, payload)
    finally:
        await server.stop(grace=1)
    assert keeper.messages == [message]
    assert peak < 2.0, f"peak {peak:.2f} x the message size"

    # The measure itself: aiosmtpd's own DATA peaks far higher, and is caught.
    stock_keeper = Keeper()
    stock = await asyncio.get_running_loop().create_server(
        lambda: SMTP(stock_keeper, data_size_limit=2 * MESSAGE_SIZE), "127.0.0.1", 0)
    try:
        stock_peak = await peak_while_receiving(stock.sockets[0].getsockname()[1],
                                                stock_keeper, payload)
    finally:
        stock.close()
    assert stock_peak > 3, f"stock peak {stock_peak:.2f}"




# --- no stall ---------------------------------------------------------------------------------
# What a client has already sent is read from the stream's buffer without waiting on the
# socket; each loop below must still give the other sessions their turn.

SHORT_LINES = 2**21  # bytes of short lines: a million of two bytes, half a million of four
PIPELINED = 50_000  # commands in one go
PAUSE = 0.05  # CPU seconds a turn of the loop may take once in a while (the collector)
HELD = 0.15  # CPU seconds held in all: fair, at most 0.06 was seen; unfair, 0.25 to 2.4


@pytest.fixture
async def keeper_server(settings: Settings) -> AsyncIterator[tuple[int, Keeper]]:
    """crm_mailer's SMTP server with the default limits, its handler keeping each message."""
    keeper = Keeper()
    server = SmtpServer(settings, None)  # type: ignore[arg-type]
    server.handler = keeper  # type: ignore[assignment]
    _, port = await server.start()
    yield port, keeper
    await server.stop(grace=1)


async def time_held(client: Callable[[], bytes]) -> tuple[bytes, float]:
    """Run a blocking client in a thread; what it returns, and how long the loop was held
    meanwhile: the loop thread's CPU time between two turns of a sleeper, summed over the
    turns that took more of it than a pause of the collector (PAUSE) could. CPU time, not
    the clock: on a busy machine the clock runs on while no process of ours is running,
    and the client thread's share of the GIL is this test's own (a real client is another
    process); neither is the loop being held by work it does."""
    held = 0.0
    running = asyncio.ensure_future(asyncio.to_thread(client))
    while not running.done():
        started = time.thread_time()
        await asyncio.sleep(0.005)
        if (busy := time.thread_time() - started) > PAUSE:
            held += busy
    return await running, held


def session(port: int, *commands: bytes) -> tuple[socket.socket, BinaryIO]:
    """A connected socket after the greeting and `commands`, each answered."""
    sock = socket.create_connection(("127.0.0.1", port))
    stream = sock.makefile("rb")
    stream.readline()
    for command in commands:
        sock.sendall(command + b"\r\n")
        while stream.readline()[3:4] == b"-":
            pass
    return sock, stream


@pytest.mark.timeout(120)
@pytest.mark.parametrize("line", [b"\r\n", b"a.\r\n"], ids=["empty", "ending in a dot"])
async def test_a_message_of_short_lines_does_not_hold_the_loop(
        keeper_server: tuple[int, Keeper], line: bytes) -> None:
    """Each socket read of a megabyte of empty lines once held the loop for a quarter of a
    second, and the next one again. Lines that end in a dot are the reader's slowest now:
    one piece each, read from the buffer without waiting on the socket."""
    port, keeper = keeper_server
    lines = line * (SHORT_LINES // len(line))

    def blast() -> bytes:
        sock, stream = session(port, b"EHLO client.test", b"MAIL FROM:<a@xyz.de>",
                               b"RCPT TO:<crm@xyz.hq.example>", b"DATA")
        with sock, stream:
            sock.sendall(lines + b".\r\n")
            return stream.readline()

    reply, held = await time_held(blast)
    assert reply.startswith(b"250")
    assert keeper.messages == [lines]
    assert held < HELD, f"the loop was held for {held:.3f} s"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", [b"NOOP", b"HELP", b"RSET", b"MAIL FROM:<a@xyz.de>", b""],
                         ids=["NOOP", "HELP", "RSET", "MAIL", "empty line"])
async def test_a_flood_of_pipelined_commands_does_not_hold_the_loop(
        keeper_server: tuple[int, Keeper], command: bytes) -> None:
    """50,000 NOOPs sent in one go once held the loop for a second and more."""
    port, _ = keeper_server

    def flood() -> bytes:
        sock, stream = session(port, b"EHLO client.test")
        with sock, stream:
            replies: list[bytes] = []
            reading = threading.Thread(
                target=lambda: replies.extend(stream.readline() for _ in range(PIPELINED)))
            reading.start()  # the replies are read as they come: no back-pressure
            sock.sendall((command + b"\r\n") * PIPELINED)
            reading.join()
            return replies[-1]

    last, held = await time_held(flood)
    assert last[:1] in (b"2", b"5"), last  # answered to the end (MAIL again is a 503)
    assert held < HELD, f"the loop was held for {held:.3f} s"
