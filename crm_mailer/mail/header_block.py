"""The top-level header block, read as a mail client reads it: bounded, linear, no smuggling.

This runs before anything else is parsed, so that the sender is known (and an outsider
refused) before heavy work. Lines end where the message's own line ending says: CRLF
for mail received over SMTP, LF for files written on Unix. A bare CR or LF inside a
line is no line break; when what follows it looks like a header field, a header was
hidden there (the trick behind SMTP smuggling) and the message is refused. The block
ends, as in the standard library's parser, at the first empty line or at the first line
that is neither a field nor a continuation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from crm_mailer.errors import MessageMalformed, MessageTooLarge

# A field name as the standard library's parser accepts it: printable ASCII but the colon,
# and (as there) possibly none at all: `:x` is a field, not the start of the body.
_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]*)[ \t]*:")
# Inside a line: a bare CR or LF, then something shaped like a header field. Matching only
# from the first of a run of breaks keeps the search linear (60 KB of CRs took minutes).
_HIDDEN_FIELD = re.compile(rb"(?<![\r\n])[\r\n]++([\x21-\x39\x3b-\x7e]++)[ \t]*+:")
_BARE_BREAK = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_BARE_CR = re.compile(rb"\r(?!\n)")
_FOLD_BYTES = re.compile(rb"\r?\n(?=[ \t])")
_LINE_BREAK_BYTES = re.compile(rb"[\r\n]+")


@dataclass(frozen=True, slots=True)
class HeaderBlock:
    """The header fields in order, and where the body starts."""

    fields: tuple[tuple[str, bytes], ...]  # (lower-case name, raw value with its folds)
    body_start: int
    rewritten: bytes | None = None  # the header block with in-line CR/LF made spaces

    def values(self, name: str) -> list[bytes]:
        """Every raw value of the field `name` (lower case), in order."""
        return [value for key, value in self.fields if key == name]

    def first(self, name: str) -> bytes | None:
        """The first raw value of `name`, or None."""
        return next((value for key, value in self.fields if key == name), None)

    def message_for_parser(self, raw: bytes) -> bytes:
        """The message as the standard library must see it to agree with this reading."""
        if self.rewritten is None:
            return raw
        return self.rewritten + raw[self.body_start:]


def unfold(value: bytes) -> bytes:
    """A raw header value on one line: folds removed, as RFC 5322 unfolds, then trimmed.

    A bare CR or LF left inside is no line break, as a mail client shows it: a space.
    """
    return _LINE_BREAK_BYTES.sub(b" ", _FOLD_BYTES.sub(b"", value)).strip()


def _line_ending(raw: bytes, limit: int) -> bytes:
    """CRLF when the first line ends so (SMTP), else LF (a file from a Unix mailbox)."""
    newline = raw.find(b"\n", 0, limit)
    return b"\r\n" if newline > 0 and raw[newline - 1:newline] == b"\r" else b"\n"


def _without_crlf_header(raw: bytes, limit: int) -> bool:
    """True when no CRLF ends a line before the first empty line: the header is all LF."""
    blank = raw.find(b"\n\n", 0, limit)
    end = blank if blank >= 0 else min(len(raw), limit)
    return raw.find(b"\r\n", 0, end) < 0 and raw.find(b"\n", 0, end) >= 0


def read_header_block(raw: bytes, *, max_size: int, max_fields: int,
                      line_ending: bytes | None = None) -> HeaderBlock:
    """Split the header block into fields; raise MessageTooLarge or MessageMalformed.

    `line_ending` is CRLF for mail received over SMTP, whose lines are CRLF by
    protocol; but a header that uses LF alone throughout is read by LF (there is no
    second reading to smuggle a field through). None guesses from the first line (files).
    """
    ending = line_ending or _line_ending(raw, max_size + 2)
    if ending == b"\r\n" and _without_crlf_header(raw, max_size + 2):
        ending = b"\n"  # LF throughout (a script's message sent as is): no mixed reading
    in_line = _BARE_BREAK if ending == b"\r\n" else _BARE_CR
    fields: list[tuple[str, bytearray]] = []
    pos = 0
    rewritten = False
    if ending == b"\n" and raw.startswith(b"From "):  # an mbox separator line, not a field
        pos = raw.find(b"\n") + 1 or len(raw)
    while pos < len(raw):
        end = raw.find(ending, pos, max_size + 1)
        line_end = len(raw) if end < 0 else end
        line = raw[pos:min(line_end, max_size + 1)]
        if ending == b"\n" and line.endswith(b"\r"):
            line = line[:-1]
        next_pos = line_end + len(ending) if end >= 0 else len(raw)
        if not line:
            return _block(fields, next_pos, raw if rewritten else None, in_line)
        continuation = line[:1] in (b" ", b"\t")
        field = None if continuation else _FIELD.match(line)
        if not continuation and field is None:
            # Not a field: the body starts here, as the standard library sees it.
            return _block(fields, pos, raw if rewritten else None, in_line)
        if line_end > max_size:
            raise MessageTooLarge(f"Message header block exceeds {max_size} bytes "
                                  "(max_header_size)")
        if in_line.search(line):
            hidden = _HIDDEN_FIELD.search(line)
            if hidden is not None:
                name = hidden.group(1).decode("ascii")
                raise MessageMalformed(
                    f"Message header hides a {name[:40]!r} field behind a bare CR or LF")
            rewritten = True
        if field is None:
            if fields:
                fields[-1][1].extend(b"\r\n" + line)
        else:
            if len(fields) >= max_fields:
                raise MessageMalformed(f"Message has more than {max_fields} header fields "
                                       "(max_headers)")
            fields.append((field.group(1).decode("ascii").lower(),
                           bytearray(line[field.end():].lstrip(b" \t"))))
        pos = next_pos
    return _block(fields, len(raw), raw if rewritten else None, in_line)


def _block(fields: list[tuple[str, bytearray]], body_start: int, raw: bytes | None,
           in_line: re.Pattern[bytes]) -> HeaderBlock:
    rewritten = None
    if raw is not None:  # replace in-line CR/LF by spaces, keeping the real line ends
        rewritten = in_line.sub(b" ", raw[:body_start])
    return HeaderBlock(tuple((name, bytes(value)) for name, value in fields), body_start,
                       rewritten)
