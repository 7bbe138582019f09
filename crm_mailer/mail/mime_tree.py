"""The MIME tree, built in one linear walk over the bytes: structure kept, payloads left out.

The standard library's parser held a 20 MB attachment's lines, joined and decoded them
(8 times its size in memory, seconds of CPU); its default policy parses MIME fields in
quadratic time and recursively; and where its reading of the structure differed from a
pre-check, whatever the pre-check had not seen went unchecked. So crm_mailer builds the
tree itself, by boundary lines as the standard library reads them, and hands on Message
objects that hold only what it needs:
- every part's MIME fields, read once by compat32 within the field limits and written
  again short and plain;
- a non-text payload larger than CUT_FROM bytes is left out; its decoded size is noted
  under a header whose name carries a random nonce (a sender cannot forge it), as is an
  attached message's size;
- text is kept up to a budget (its size times its nesting depth, TEXT_KEEP in all);
- where each attached message (message/rfc822) lies in the bytes is noted, the outermost
  ones only, so its header can be read later without a second walk (mail/forward.py);
- structure past the limits is refused: nesting, number of parts, and MIME fields so
  long, so full of parameters or so deeply commented that no parser should read them.
"""

from __future__ import annotations

import binascii
import bisect
import email.policy
import email.utils
import re
import secrets
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage, Message

from crm_mailer.errors import MessageMalformed, MessageTooLarge
from crm_mailer.mail.header_block import HeaderBlock, read_header_block

CUT_FROM = 4096
TEXT_KEEP = 1 << 19  # 512 KiB of text is more than any mail body a person reads
MAX_MIME_FIELD = 16_384  # bytes of one Content-Type or Content-Disposition field
MAX_MIME_PARAMETERS = 200  # RFC 2231 continuations of a long file name stay far below
MAX_COMMENT_DEPTH = 10
MAX_NAME = 1024  # characters of a file name passed on
MAX_INDEXED_DELIMITERS = 100_000  # about 7 MB of index at most; past it, ranges are scanned
_MIME_FIELDS = ("content-type", "content-disposition")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]+")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,80}")
_TYPE = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]{1,80}/[!#$%&'*+.^_`|~0-9a-z-]{1,80}")
_PRINTABLE_ASCII = re.compile(r"[ -~]*")
_BOUNDARY = re.compile(r"[ -~]{1,200}")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_DECLARED = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))',
                       re.IGNORECASE)
_DASH_LINE = re.compile(rb"^--([^\r\n]{0,210})(?:\r?\n|\Z)", re.MULTILINE)
_QP_CHUNK = 1 << 20
_MESSAGE_TYPES = ("message/rfc822", "message/global")


@dataclass(frozen=True, slots=True)
class AttachedMessage:
    """Where an attached message's bytes (its header and body) lie in the walked message."""

    start: int
    end: int
    encoding: str  # the attaching part's Content-Transfer-Encoding, lower case, or ""


@dataclass(frozen=True, slots=True)
class MimeTree:
    """The message as a tree of Message objects, and the header naming left-out sizes."""

    message: Message
    size_header: str
    # In document order; one attached inside another (a forward of a forward) is left out.
    attached: tuple[AttachedMessage, ...] = ()


@dataclass(slots=True)
class _Walk:
    raw: bytes
    max_depth: int
    max_parts: int
    max_header_size: int
    size_header: str
    parts: int = 0
    text_budget: int = TEXT_KEEP  # see text()
    delimiters: dict[bytes, list[tuple[int, int, bool]]] | None = None
    attached: list[AttachedMessage] = field(default_factory=list)

    def text(self, start: int, end: int, depth: int) -> str:
        """The text raw[start:end] as far as the budget goes, ending at a line end.

        Deeply nested text costs more to keep (every reader of the tree walks its levels),
        so it is weighed by its depth.
        """
        weight = max(1, depth)
        stop = min(end, _line_start_before(self.raw, start, start + self.text_budget // weight))
        stop = max(stop, start)
        self.text_budget -= (stop - start) * weight
        # As the standard library's BytesParser reads bytes: ASCII, others as surrogates.
        return self.raw[start:stop].decode("ascii", "surrogateescape")

    def part(self, start: int, end: int, depth: int, block: HeaderBlock | None = None,
             ) -> Message:
        """The part raw[start:end] (header block and body) as a Message."""
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
        mime = _mime_fields(block)
        if mime.content_type in _MESSAGE_TYPES:
            self.note_attached(body, end, mime.encoding)
        maintype = mime.content_type.partition("/")[0]
        if maintype == "multipart" and mime.boundary:
            message = mime.message()
            message.set_payload(self.multipart(body, end, mime.boundary.encode("latin-1"),
                                               depth))
        elif mime.content_type in _MESSAGE_TYPES and body < end \
                and mime.encoding not in ("base64", "quoted-printable"):
            message = mime.message({self.size_header: str(end - body)})
            message.set_payload([self.part(body, end, depth + 1)])
        elif maintype in ("text", "multipart"):
            message = mime.message()
            message.set_payload(self.text(body, end, depth))
        elif end - body > CUT_FROM or maintype == "message":
            # Left out: too big to hold, or a message we do not descend into.
            size = _decoded_size(self.raw, body, end, mime.encoding)
            message = mime.message({self.size_header: str(size)})
            message.set_payload("")
        else:
            message = mime.message()
            message.set_payload(self.raw[body:end].decode("ascii", "surrogateescape"))
        return message

    def multipart(self, start: int, end: int, boundary: bytes,
                  depth: int) -> list[Message | str]:
        """The parts between the boundary's delimiter lines; preamble and epilogue dropped."""
        parts: list[Message | str] = []
        part_start: int | None = None
        for line_start, line_end, closing in self._delimiter_lines(boundary, start, end):
            if part_start is not None:
                # The line break before a delimiter belongs to the delimiter, not the part.
                part_end = _without_line_break(self.raw, part_start, line_start)
                parts.append(self.part(part_start, part_end, depth + 1))
            if closing:
                return parts
            part_start = line_end
        if part_start is not None:  # no close delimiter: the last part runs to the end
            parts.append(self.part(part_start, end, depth + 1))
        return parts

    def note_attached(self, start: int, end: int, encoding: str) -> None:
        """Note an attached message, unless it lies inside the one noted last.

        The walk meets parts in document order, so the outermost attached messages are
        disjoint and ascending: the last one noted is the only one that can hold this one.
        """
        if start < end and (not self.attached or start >= self.attached[-1].end):
            self.attached.append(AttachedMessage(start, end, encoding))

    def _delimiter_lines(self, boundary: bytes, start: int,
                         end: int) -> Iterator[tuple[int, int, bool]]:
        """(line start, line end, closing) of each delimiter line of `boundary` in range.

        Read from one index of the whole message, so nesting does not make the walk scan
        the message once per level.
        """
        if self.delimiters is None:
            self.delimiters = _delimiter_index(self.raw, MAX_INDEXED_DELIMITERS)
        lines = self.delimiters.get(boundary)
        if lines is None:  # declared in a form the index did not see: scan this range
            pattern = re.compile(rb"^--" + re.escape(boundary) + rb"(--)?[ \t]*(\r?\n|\Z)",
                                 re.MULTILINE)
            for found in pattern.finditer(self.raw, start, end):
                yield found.start(), found.end(), found.group(1) is not None
            return
        for index in range(bisect.bisect_left(lines, (start, 0, False)), len(lines)):
            if lines[index][0] >= end:
                return
            yield lines[index]

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


def _delimiter_index(raw: bytes, most: int) -> dict[bytes, list[tuple[int, int, bool]]]:
    """Every line that is a delimiter of a boundary declared somewhere in the message."""
    declared = {found.group(1) or found.group(2) for found in _declarations(raw)}
    index: dict[bytes, list[tuple[int, int, bool]]] = {}
    count = 0
    for line in _dash_lines(raw):
        text = line.group(1).rstrip(b" \t")
        for boundary, closing in ((text, False), (text[:-2], True)):
            if boundary in declared and (not closing or text.endswith(b"--")):
                index.setdefault(boundary, []).append((line.start(), line.end(), closing))
                count += 1
        if count > most:  # more than any message within the limits has: scan instead,
            return {}     # and let the walk refuse at the limit it meets first
    return index


# The two scans below find what _DECLARED.finditer and _DASH_LINE.finditer find, but let
# bytes.find (C) look for where a match can start: the regexes tried every byte, 0.65 ms
# per message of the benchmark's mix (40 KB on average) in a reader thread that holds the
# GIL; these take 0.07 ms.
_WORD = b"boundary"
_WINDOW = 1 << 20  # lowered a window at a time: no second copy of a large message


def _declarations(raw: bytes) -> Iterator[re.Match[bytes]]:
    """_DECLARED.finditer(raw): each match starts at the word "boundary" in any case."""
    resume = 0  # matches do not overlap: the next one starts after the last one's end
    # (which also skips a word in the overlap of two windows, found in the first)
    for start in range(0, len(raw), _WINDOW):
        window = raw[start:start + _WINDOW + len(_WORD) - 1].lower()
        at = window.find(_WORD)
        while at != -1:
            if start + at >= resume and (found := _DECLARED.match(raw, start + at)):
                resume = found.end()
                yield found
            at = window.find(_WORD, at + 1)


def _dash_lines(raw: bytes) -> Iterator[re.Match[bytes]]:
    """_DASH_LINE.finditer(raw): each match starts a line (after LF, as ^ does) with "--"."""
    if raw.startswith(b"--") and (found := _DASH_LINE.match(raw)):
        yield found
    at = raw.find(b"\n--")
    while at != -1:
        if found := _DASH_LINE.match(raw, at + 1):
            yield found
        at = raw.find(b"\n--", at + 1)


def mime_tree(raw: bytes, block: HeaderBlock, *, max_depth: int, max_parts: int,
              max_header_size: int) -> MimeTree:
    """The message's MIME tree, payloads left out; raises MessageRefused past a limit.

    `raw` is the message as the reading of `block` sees it (its header rewritten).
    """
    size_header = f"X-Crm-Mailer-Size-{secrets.token_hex(8)}"
    walk = _Walk(raw, max_depth, max_parts, max_header_size, size_header)
    message = walk.part(0, len(raw), 0, block)
    return MimeTree(message, size_header, tuple(walk.attached))


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


@dataclass(frozen=True, slots=True)
class _MimeFields:
    """A part's MIME fields, read once and written again in a form the parser reads fast."""

    content_type: str
    boundary: str | None = None
    charset: str | None = None
    name: str | tuple[str, str] | None = None  # plain, or (charset, bytes as latin-1)
    disposition: str | None = None
    filename: str | tuple[str, str] | None = None
    encoding: str = ""

    def message(self, extra: dict[str, str] | None = None) -> Message:
        """A part with these fields (and `extra`), short and plain; no payload yet."""
        content_type = self.content_type
        for param, value in (("boundary", self.boundary), ("charset", self.charset),
                             ("name", self.name)):
            content_type += _parameter(param, value)
        message = EmailMessage(policy=email.policy.compat32)
        message["Content-Type"] = content_type
        if self.disposition:
            message["Content-Disposition"] = (f"{self.disposition}"
                                              f"{_parameter('filename', self.filename)}")
        if self.encoding:
            message["Content-Transfer-Encoding"] = self.encoding
        for name, value in (extra or {}).items():
            message[name] = value
        return message


def _mime_fields(block: HeaderBlock) -> _MimeFields:
    """Read the MIME fields as the standard library's compat32 reads them (fast on the
    bounded fields _check_mime_field lets through), keeping only what matters here.

    The standard library's default policy parses these fields in quadratic time (2 KB of
    quotes: 20 ms, each time one is read); the rewritten fields are short and plain.
    """
    holder = Message()
    for name in (*_MIME_FIELDS, "content-transfer-encoding"):
        value = block.first(name)
        if value is not None:  # control characters (NUL, bare CR) are dropped first
            holder[name] = _CONTROL.sub(b"", _FOLD.sub(b" ", value)).decode("latin-1")
    content_type = holder.get_content_type()
    if not _TYPE.fullmatch(content_type):
        content_type = "text/plain"
    disposition = holder.get("content-disposition")
    kind = str(disposition).split(";")[0].strip().lower() if disposition is not None else ""
    encoding = str(holder.get("content-transfer-encoding", "")).strip().lower()
    found = _param(holder, "boundary")
    # Only a boundary the parser will find again as written; else the part reads as text.
    boundary = found if isinstance(found, str) and _BOUNDARY.fullmatch(found) else None
    return _MimeFields(
        content_type=content_type,
        boundary=boundary,
        charset=_token(_param(holder, "charset")),
        name=_name_value(_param(holder, "name")),
        disposition=(kind if _TOKEN.fullmatch(kind) else "attachment") if kind else None,
        filename=_name_value(_param(holder, "filename", "content-disposition")),
        encoding=encoding if _TOKEN.fullmatch(encoding) else "",
    )


def _param(holder: Message, name: str, header: str = "content-type") -> object:
    """A parameter as compat32 reads it; None where the standard library trips over it."""
    try:
        value = holder.get_param(name, header=header)
    except Exception:  # decode_params has raised TypeError on odd continuations
        return None
    if isinstance(value, str) and name == "boundary":
        return email.utils.unquote(value.rstrip())
    return value


def _token(value: object) -> str | None:
    text = value[2] if isinstance(value, tuple) else value
    return text if isinstance(text, str) and _TOKEN.fullmatch(text) else None


def _name_value(value: object) -> str | tuple[str, str] | None:
    """A file name parameter, at most MAX_NAME characters: plain, or RFC 2231 encoded."""
    if isinstance(value, tuple):
        charset, _, text = value
        return (charset if isinstance(charset, str) and _TOKEN.fullmatch(charset)
                else "unknown-8bit", str(text)[:MAX_NAME])
    if isinstance(value, str):
        text = value[:MAX_NAME]
        return text if _PRINTABLE_ASCII.fullmatch(text) else ("unknown-8bit", text)
    return None


def _parameter(name: str, value: str | tuple[str, str] | None) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        charset, text = value
        encoded = urllib.parse.quote(text.encode("latin-1", "replace"), safe="")
        return f"; {name}*={charset}''{encoded}"
    if _PRINTABLE_ASCII.fullmatch(value):
        quoted = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'; {name}="{quoted}"'
    encoded = urllib.parse.quote(value.encode("latin-1", "replace"), safe="")
    return f"; {name}*=unknown-8bit''{encoded}"


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
