"""The DATA phase's reader: the message into one buffer, dot-unstuffed, within the limits.

aiosmtpd 1.4.6 keeps one bytearray per line and joins them at the end: about 2.8x the
message at the peak. This reads into one BytesIO, whose `getvalue()` hands its buffer over
without a copy, so receiving stays near the message's own size (plus the stream's buffer).

Byte for byte it is aiosmtpd's smtp_DATA: a line ends at CRLF (a bare CR or LF is data), a
leading dot is removed, the final ".CRLF" is not part of the message; a message over the
size limit or with a line over the line limit is still read to its end, then refused.
"""

from __future__ import annotations

import asyncio
import enum
import io

from crm_mailer.smtp import replies

CRLF = b"\r\n"
END_OF_DATA = b".\r\n"
# Lines already in the stream's buffer are read without waiting for the socket, so without
# a pause every so many lines a message of short lines held every other session as long as
# the buffered lines took (a million empty lines: 1.7 s in all, a quarter of a second at a
# time). A pause every 1,024 lines costs nothing a message of real mail notices.
LINES_BETWEEN_PAUSES = 1024


class Overflow(enum.Enum):
    """A limit the message broke; it was read to its end and is refused with this reply."""

    LINE_TOO_LONG = replies.S500_LINE_TOO_LONG
    TOO_BIG = replies.S552_MESSAGE_TOO_BIG


async def read_message(reader: asyncio.StreamReader, *, max_size: int | None,
                       max_line_length: int) -> bytes | Overflow:
    """Read DATA up to the lone dot: the message, or the limit it broke.

    `max_size` counts the bytes as sent (dots and CRLFs included, the final dot line not;
    None or 0: no limit);
    `max_line_length` counts a line with its CRLF, and the reader's own limit (aiosmtpd sets
    it to the same number) refuses longer lines before they are buffered whole.
    """
    buffer: io.BytesIO | None = io.BytesIO()
    overflow: Overflow | None = None
    size = 0
    inside_long_line = False  # the reader gave part of a line over its limit
    lines = 0
    while True:
        lines += 1
        if lines % LINES_BETWEEN_PAUSES == 0:
            await asyncio.sleep(0)  # let the other sessions have the loop
        try:
            line = await reader.readuntil(CRLF)
        except asyncio.LimitOverrunError as overrun:
            overflow = overflow or Overflow.LINE_TOO_LONG
            buffer = None  # the message is refused: let its memory go at once
            line = await reader.read(overrun.consumed)
        if line == END_OF_DATA and not inside_long_line:
            break
        size += len(line)
        if overflow is None and max_size and size > max_size:
            overflow, buffer = Overflow.TOO_BIG, None
        inside_long_line = not line.endswith(CRLF)
        if buffer is None:  # refused already (a part of a long line only comes after that)
            continue
        if len(line) > max_line_length:
            overflow, buffer = Overflow.LINE_TOO_LONG, None
        elif line.startswith(b"."):
            buffer.write(memoryview(line)[1:])  # RFC 5321 4.5.2: remove the transparency dot
        else:
            buffer.write(line)
    if overflow is not None:
        return overflow
    assert buffer is not None  # only an overflow lets it go
    return buffer.getvalue()
