"""The DATA phase's reader: the message into one buffer, dot-unstuffed, within the limits.

aiosmtpd 1.4.6 reads a line at a time (a coroutine call per line: 0.5 ms of the loop for
40 KB of mail), keeps one bytearray per line and joins them at the end: about 2.8x the
message at the peak. This takes what the stream has buffered in pieces of up to SLICE
bytes, scans them with bytes methods (0.1 ms for the same mail), and writes them into
one BytesIO, whose `getvalue()` hands its buffer over without a copy.

Byte for byte it is aiosmtpd's smtp_DATA: a line ends at CRLF (a bare CR or LF is data), a
leading dot is removed, the final ".CRLF" is not part of the message; a message over the
size limit or with a line over the line limit is still read to its end, then refused with
the limit aiosmtpd would name (_first_overflow).
"""

from __future__ import annotations

import asyncio
import enum
import io

from crm_mailer.smtp import replies

CRLF = b"\r\n"
END_OF_DATA = b".\r\n"
SLICE = 1 << 18  # the most taken from the stream's buffer at once: each piece is copied
# Pieces are handed on together (text has many lines ending in "."), once they add up to
# BATCH bytes or BATCH_PIECES pieces. What the stream has buffered is taken without waiting
# for the socket, so after each batch the other sessions get the loop: a million empty
# lines once held it a quarter of a second at a time.
BATCH = 1 << 16
BATCH_PIECES = 256


class Overflow(enum.Enum):
    """A limit the message broke; it was read to its end and is refused with this reply."""

    LINE_TOO_LONG = replies.S500_LINE_TOO_LONG
    TOO_BIG = replies.S552_MESSAGE_TOO_BIG


async def read_message(reader: asyncio.StreamReader, *, max_size: int | None,
                       max_line_length: int) -> bytes | Overflow:
    """Read DATA up to the lone dot: the message, or the limit it broke.

    `max_size` counts the bytes as sent (dots and CRLFs included, the final dot line not;
    None or 0: no limit); `max_line_length` counts a line with its CRLF, and must be the
    reader's own limit (aiosmtpd sets it so), which decides when a long line is refused.

    A stream cannot be peeked, and nothing past the final dot may be read (a client may
    have sent its next command behind it): so the reader asks the stream for everything up
    to the next ".CRLF", and that is the end when a line starts there.
    """
    receiver = _Receiver(max_size or 0, max_line_length)
    before = CRLF  # the last two bytes read: the data begins at a line start
    batch: list[bytes] = []  # pieces not handed on yet
    batched = 0
    while True:
        try:
            piece = await reader.readuntil(END_OF_DATA)
        except asyncio.LimitOverrunError as overrun:  # no ".CRLF" within the reader's limit
            piece = await reader.read(min(overrun.consumed, SLICE))
        else:
            if (before + piece[-5:-3])[-2:] == CRLF:  # the lone dot at a line start
                batch.append(piece[:-3])
                receiver.take(b"".join(batch))
                return receiver.result()
        batch.append(piece)
        batched += len(piece)
        before = (before + piece[-2:])[-2:]
        if batched >= BATCH or len(batch) >= BATCH_PIECES:
            receiver.take(b"".join(batch))
            batch.clear()
            batched = 0
            await asyncio.sleep(0)  # let the other sessions have the loop


class _Receiver:
    """The message from the bytes as sent, piece after piece, checked against the limits."""

    def __init__(self, max_size: int, max_line: int) -> None:
        self.max_size, self.max_line = max_size, max_line
        self.buffer: io.BytesIO | None = io.BytesIO()  # None once the message is refused
        self.overflow: Overflow | None = None
        self.size = 0  # bytes of the finished lines, as sent
        self.line = 0  # bytes of the line not finished yet, as sent
        self.carry = b""  # a CR ending a piece: the next piece may bring its LF

    def result(self) -> bytes | Overflow:
        if self.overflow is not None:
            return self.overflow
        # The final dot comes after a CRLF: every line is finished.
        assert self.buffer is not None and not self.carry and not self.line
        return self.buffer.getvalue()

    def take(self, data: bytes) -> None:
        if self.overflow is not None:  # refused: only the end of the data matters now
            return
        if self.carry:
            data, self.carry = self.carry + data, b""
        if data.endswith(b"\r"):
            data, self.carry = data[:-1], b"\r"
        last = data.rfind(CRLF)
        if last >= 0:
            self._lines(data, last + 2)
            if self.overflow is not None:
                return
        start = last + 2 if last >= 0 else 0
        if start < len(data):
            self._partial(data, start)

    def _lines(self, data: bytes, end: int) -> None:
        """data[:end]: whole lines, the first one the rest of the unfinished line."""
        length = self.line + end
        first = self.line + data.find(CRLF) + 2  # no other line is longer than `end`
        within = max(first, end) <= self.max_line and \
            not (self.max_size and self.size + length > self.max_size)
        if self.buffer is None or not within:  # a limit may be broken: look closer
            self.overflow = _first_overflow(data, end, self.line, self.size,
                                            self.max_size, self.max_line)
        if self.overflow is not None:
            self.buffer = None
            return
        assert self.buffer is not None  # only a line that breaks a limit lets it go
        self._write(data, 0, end)
        self.size += length
        self.line = 0

    def _partial(self, data: bytes, start: int) -> None:
        """data[start:]: the start, or more, of a line whose CRLF has not come yet."""
        if self.buffer is not None:
            self._write(data, start, len(data))
        self.line += len(data) - start
        # With its CRLF the line will be at least two bytes longer than this.
        if self.line + 2 > self.max_line or \
                (self.max_size and self.size + self.line + 2 > self.max_size):
            self.buffer = None  # refused whatever comes; the line's end tells which limit

    def _write(self, data: bytes, start: int, end: int) -> None:
        """data[start:end] into the message, without the dot at the start of each line
        (RFC 5321 4.5.2)."""
        assert self.buffer is not None
        if self.line == 0 and data.startswith(b".", start):
            start += 1
        if data.find(b"\r\n.", start, end) < 0:
            self.buffer.write(memoryview(data)[start:end])
        else:
            self.buffer.write(data[start:end].replace(b"\r\n.", b"\r\n"))


def _first_overflow(data: bytes, end: int, carried: int, size: int, max_size: int,
                    max_line: int) -> Overflow | None:
    """The first limit the lines in data[:end] break, as aiosmtpd decides it line by line:
    a line longer than the stream's limit by more than its CRLF is refused as it is read,
    before its size counts; a shorter one first adds to the size, then is measured.
    The first line is `carried` bytes longer (its start came in an earlier piece)."""
    lines = data[:end].split(CRLF)
    lines.pop()  # what follows the last CRLF: nothing
    longest = max(len(lines[0]) + carried, max(map(len, lines))) + 2
    if longest <= max_line and not (max_size and size + carried + end > max_size):
        return None  # the common case, told without a step per line
    for index, content in enumerate(lines):
        length = len(content) + 2 + (carried if index == 0 else 0)
        if length > max_line + 2:
            return Overflow.LINE_TOO_LONG
        if max_size and size + length > max_size:
            return Overflow.TOO_BIG
        if length > max_line:
            return Overflow.LINE_TOO_LONG
        size += length
    return None
