"""The message as the parser needs to see it: MIME structure kept, big payloads left out.

The standard library's parser holds a part's lines, then joins and decodes them: a 20 MB
attachment cost about 8 times its size in memory and seconds of time. crm_mailer needs
an attachment's name, type and size, never its content, so before parsing, one linear
walk over the MIME structure (by boundary lines, as the standard library reads them):
- cuts the body of every non-text leaf part larger than CUT_FROM bytes, noting its
  decoded size in a header whose name carries a random nonce (a sender cannot forge it);
- shortens a text part to its first TEXT_KEEP bytes (the stored raw message keeps all);
- refuses structure past the limits: nesting, number of parts, and MIME header fields
  so long or so full of parameters that the standard library's quadratic parameter
  parser would take seconds.
"""

from __future__ import annotations

import binascii
import re
import secrets
from dataclasses import dataclass, field
from email.message import Message

from crm_mailer.errors import MessageMalformed, MessageTooLarge
from crm_mailer.mail.header_block import HeaderBlock, read_header_block

CUT_FROM = 4096
TEXT_KEEP = 1 << 20
MAX_MIME_FIELD = 16_384  # bytes of one Content-Type or Content-Disposition field
MAX_MIME_PARAMETERS = 200  # RFC 2231 continuations of a long file name stay far below
MAX_COMMENT_DEPTH = 10
_MIME_FIELDS = ("content-type", "content-disposition")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_QP_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Slimmed:
    """The reduced message and the header that carries a cut part's decoded size."""

    raw: bytes
    size_header: str


@dataclass(slots=True)
class _Walk:
    raw: bytes
    max_depth: int
    max_parts: int
    max_header_size: int
    size_header: str
    out: list[bytes | memoryview] = field(default_factory=list)
    parts: int = 0

    def copy(self, start: int, end: int) -> None:
        if end > start:
            self.out.append(memoryview(self.raw)[start:end])

    def part(self, start: int, end: int, depth: int, block: HeaderBlock | None = None) -> None:
        """Emit the part raw[start:end] (header block and body), slimmed."""
        self.parts += 1
        if self.parts > self.max_parts:
            raise MessageMalformed(f"Message has more than {self.max_parts} MIME parts "
                                   "(max_mime_parts)")
        if depth > self.max_depth:
            raise MessageMalformed(f"MIME parts nest deeper than {self.max_depth} levels "
                                   "(max_mime_depth)")
        if block is None:
            block = self._headers(start, end)
        body = min(start + block.body_start, end)
        for name in _MIME_FIELDS:
            for value in block.values(name):
                _check_mime_field(name, value)
        content_type, boundary, encoding = _content_type(block)
        maintype = content_type.partition("/")[0]
        if maintype == "multipart" and boundary:
            self.copy(start, body)
            self.multipart(body, end, boundary, depth)
        elif content_type in ("message/rfc822", "message/global") and body < end \
                and encoding not in ("base64", "quoted-printable"):
            self.copy(start, body)
            self.part(body, end, depth + 1)
        elif maintype == "text" or maintype == "multipart":
            self.copy(start, min(end, _line_start_before(self.raw, body, body + TEXT_KEEP)))
        elif end - body > CUT_FROM:
            header = bytes(self.raw[start:body]).rstrip(b"\r\n")
            eol = b"\r\n" if header.endswith(b"\r") or b"\r\n" in header else b"\n"
            size = _decoded_size(self.raw, body, end, encoding)
            self.out.append(header.rstrip(b"\r") + eol + self.size_header.encode() + b": "
                            + str(size).encode() + eol + eol)
        else:
            self.copy(start, end)

    def multipart(self, start: int, end: int, boundary: bytes, depth: int) -> None:
        delimiter = re.compile(rb"^--" + re.escape(boundary) + rb"(--)?[ \t]*(\r?\n|\Z)",
                               re.MULTILINE)
        position = start
        part_start: int | None = None
        for found in delimiter.finditer(self.raw, start, end):
            line_start = found.start()
            # The line break before a delimiter belongs to the delimiter, not the part.
            part_end = _without_line_break(self.raw, part_start or 0, line_start)
            if part_start is None:
                self.copy(position, line_start)  # the preamble
            else:
                self.part(part_start, part_end, depth + 1)
                self.copy(part_end, line_start)
            self.copy(line_start, found.end())
            position = found.end()
            if found.group(1):  # the close delimiter: the rest is epilogue
                self.copy(position, min(end, _line_start_before(self.raw, position,
                                                                 position + TEXT_KEEP)))
                return
            part_start = position
        if part_start is not None:  # no close delimiter: the last part runs to the end
            self.part(part_start, end, depth + 1)
        else:
            self.copy(position, min(end, _line_start_before(self.raw, position,
                                                             position + TEXT_KEEP)))

    def _headers(self, start: int, end: int) -> HeaderBlock:
        limit = min(end, start + self.max_header_size + 4)
        blank = _BLANK_LINE.search(self.raw, start, limit)
        if self.raw.startswith((b"\r\n", b"\n"), start):  # no header at all
            stop = start
        else:
            stop = blank.end() if blank else limit
        try:
            return read_header_block(self.raw[start:stop], max_size=self.max_header_size,
                                     max_fields=self.max_parts)
        except MessageTooLarge:
            raise MessageTooLarge(f"A MIME part's header exceeds {self.max_header_size} "
                                  "bytes (max_header_size)") from None


def slim(raw: bytes, block: HeaderBlock, *, max_depth: int, max_parts: int,
         max_header_size: int) -> Slimmed:
    """The message with big payloads left out; raises MessageRefused past a limit."""
    size_header = f"X-Crm-Mailer-Size-{secrets.token_hex(8)}"
    walk = _Walk(raw, max_depth, max_parts, max_header_size, size_header)
    walk.part(0, len(raw), 0, block)
    return Slimmed(b"".join(walk.out), size_header)


def _check_mime_field(name: str, value: bytes) -> None:
    label = "Content-Type" if name == "content-type" else "Content-Disposition"
    if len(value) > MAX_MIME_FIELD:
        raise MessageMalformed(f"A {label} field is longer than {MAX_MIME_FIELD} bytes")
    if value.count(b";") > MAX_MIME_PARAMETERS:
        raise MessageMalformed(f"A {label} field has more than {MAX_MIME_PARAMETERS} "
                               "parameters")
    if b"(" in value and _comment_depth(value) > MAX_COMMENT_DEPTH:
        # The standard library reads nested comments recursively.
        raise MessageMalformed(f"A {label} field nests comments deeper than "
                               f"{MAX_COMMENT_DEPTH} levels")


def _comment_depth(value: bytes) -> int:
    deepest = depth = 0
    quoted = escaped = False
    for byte in value:
        if escaped:
            escaped = False
        elif byte == 0x5C:  # backslash
            escaped = True
        elif byte == 0x22 and not depth:  # a double quote outside comments
            quoted = not quoted
        elif not quoted and byte == 0x28:
            depth += 1
            deepest = max(deepest, depth)
        elif not quoted and byte == 0x29 and depth:
            depth -= 1
    return deepest


def _content_type(block: HeaderBlock) -> tuple[str, bytes | None, str]:
    """(type/subtype, boundary, transfer encoding) as the standard library reads them."""
    holder = Message()
    value = block.first("content-type")
    if value is not None:
        holder["Content-Type"] = value.decode("latin-1")
    boundary = holder.get_boundary()
    encoding = (block.first("content-transfer-encoding") or b"").decode("latin-1")
    return (holder.get_content_type(), boundary.encode("latin-1") if boundary else None,
            encoding.strip().lower())


def _without_line_break(raw: bytes, start: int, end: int) -> int:
    if end > start and raw[end - 1:end] == b"\n":
        end -= 1
        if end > start and raw[end - 1:end] == b"\r":
            end -= 1
    return end


def _line_start_before(raw: bytes, start: int, limit: int) -> int:
    """`limit` if the text ends before it, else the start of the line that crosses it."""
    if limit >= len(raw):
        return len(raw)
    cut = raw.rfind(b"\n", start, limit)
    return cut + 1 if cut >= 0 else limit


def _decoded_size(raw: bytes, start: int, end: int, encoding: str) -> int:
    """The size of the part's content once its transfer encoding is undone, read in place."""
    length = end - start
    if encoding == "base64":
        ignored = sum(raw.count(char, start, end) for char in (b"\r", b"\n", b" ", b"\t"))
        padding = raw.count(b"=", start, end)
        return max(0, (length - ignored) * 3 // 4 - padding)
    if encoding == "quoted-printable":
        size = 0
        position = start
        while position < end:
            stop = _line_start_before(raw, position, min(end, position + _QP_CHUNK))
            stop = stop if stop > position else min(end, position + _QP_CHUNK)
            size += len(binascii.a2b_qp(raw[position:stop]))
            position = stop
        return size
    return length
