"""The original a forward carries: who wrote it, to whom, when, about what (rule 9's reading).

A forward carries its original in one of two ways, and both are read here, without I/O:
- written into the body as a header block, under a line each client words its own way
  (Outlook, Gmail, Thunderbird, Apple Mail; German and English), or in newer Outlook under
  no such line at all, just `Von:` followed by `Gesendet:`;
- attached as a message/rfc822 part: its own header fields are read from where the MIME
  tree noted it (mime_tree.AttachedMessage), within the message's limits, and nothing
  inside it is descended into.

What counts as a forward, and which original is its:
- The start of the body (SCAN_CHARS) is read line by line until the first thing that
  settles it. Gmail's, Thunderbird's and Apple Mail's forward lines say "forward" and
  settle it. Outlook writes the same block above a reply as above a forward (and
  Thunderbird can write "Original Message" above either), so such a block counts as a
  forward only when the subject's first prefix is a forward's (WG:, FW:, Fwd:, Wtrlt:);
  under any other subject the mail is a reply, and no original is found.
- A reply's attribution line ("On ... wrote:", "Am ... schrieb ...:") or quoted text (`>`)
  before any block also settles it: a forward quoted inside a reply is not this mail's
  original. A block that is itself quoted, as Apple Mail quotes its fields, still counts.
- Only the first block counts: in a forward of a forward, the outermost one.
- Only when the body holds no block at all: the first attached message, in document
  order (`further_originals` counts the others, so several can be treated as uncertain).
  A reply's attachment is no forwarded original, nor is the message a delivery or read
  report (multipart/report) returns.
- A block whose From line holds no readable address still is a forward: `from_address` is
  None (Outlook writes only a name for a colleague in the same Exchange). A forward line
  followed by no field at all is read as text.

The work is bounded: at most SCAN_CHARS of the body, at most MAX_BLOCK_LINES of a block,
MAX_FIELD_CHARS of a field; patterns are linear (no nested quantifiers, possessive runs)
and every line is looked at a bounded number of times. Garbage gives None, never an error.
"""

from __future__ import annotations

import binascii
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from typing import TYPE_CHECKING, Any, Literal

from crm_mailer.errors import MessageRefused
from crm_mailer.mail.addresses import element_addresses, normalize_address, split_address_list
from crm_mailer.mail.header_block import read_header_block, unfold
from crm_mailer.mail.mime_tree import AttachedMessage, MimeTree
from crm_mailer.mail.thread import message_id_key

if TYPE_CHECKING:
    from crm_mailer.mail.parse import Limits

Source = Literal["attachment", "inline:outlook", "inline:gmail", "inline:thunderbird",
                 "inline:apple-mail"]

SCAN_CHARS = 65_536  # of the body's text: a forward's block sits below a short note
MAX_BLOCK_LINES = 40  # lines of one header block, wrapped fields and blank lines included
MAX_FIELD_CHARS = 4096  # of one field's value; a longer one is read up to there
MAX_QUOTE_DEPTH = 50  # `>` read at a line's start; deeper quoting is no block of ours
_MAX_MARKER = 100  # characters of a forward line; longer lines are text
_MAX_ATTRIBUTION = 400  # characters of "On ... wrote:" over at most two lines
_FORWARD_PREFIXES = frozenset({"fw", "fwd", "wg", "wtrlt"})

# Field labels as the clients write them (case-insensitive); "other" ones are passed over.
_LABELS = {
    "von": "from", "from": "from",
    "gesendet": "date", "sent": "date", "datum": "date", "date": "date",
    "an": "to", "to": "to",
    "cc": "cc", "kopie": "cc", "kopie (cc)": "cc",
    "betreff": "subject", "subject": "subject",
    **dict.fromkeys(("reply-to", "antwort an", "antworten an", "bcc", "wichtigkeit",
                     "importance", "priorität", "priority", "anlagen", "attachments",
                     "newsgroups", "organisation", "organization", "kategorien",
                     "categories", "message-id"), "other"),
}
_ADDRESS_FIELDS = ("from", "to", "cc")
_ORIGINAL_FIELDS = ("from", "to", "cc", "subject", "date", "message-id")
# Where a second field starts on one line: "Von: Bob <b@x> Gesendet: ..." (HTML without <br>).
_INLINE_LABEL = re.compile(r"(?<=\s)(von|from|gesendet|sent|datum|date|an|to|cc|betreff"
                           r"|subject)[ \t]*+:", re.IGNORECASE)
# Lines that can settle the question; everything else is passed over in C. Matched from the
# line break before them (not `^`): a literal start is searched for fast, six times faster.
_CANDIDATE = re.compile(r"\n[ \t\u00a0]*+(?:>|-{2}|begin forwarded|anfang der weitergeleiteten"
                        r"|on |am |\*?(?:von|from)[ \t]*+\*?:)", re.IGNORECASE)
_MARKERS = {  # the words between the dashes -> whether they say "forward"
    "original message": False, "ursprüngliche nachricht": False, "originalnachricht": False,
    "forwarded message": True, "weitergeleitete nachricht": True,
}
_APPLE_MARKERS = ("begin forwarded message:", "anfang der weitergeleiteten nachricht:")
_PREFIX = re.compile(r"([^\W\d_]{1,12})[ \t]*+(?:\[\d{1,4}\]|\(\d{1,4}\)|\^\d{1,4})?[ \t]*+:")
_MAILTO = re.compile(r"\[[ \t]*+mailto:[ \t]*+([^\[\]\s]{1,254})[ \t]*+\]", re.IGNORECASE)
_BARE_ADDRESS = re.compile(r"[^\s<>()\[\]\",;:]{1,64}@[^\s<>()\[\]\",;:]{1,253}")
_INVISIBLE = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2007": " ", "\t": " ",
                            "\u200b": None, "\u200c": None, "\u200d": None, "\ufeff": None})
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]++")

# Dates as the clients write them: "Montag, 16. März 2026 17:22" (Outlook), "Mon, Mar 16,
# 2026 at 5:22 PM" (Gmail), "16. März 2026 um 17:22:03 MEZ" (Apple), RFC 5322 (Thunderbird).
_MONTHS = {
    "januar": 1, "january": 1, "jänner": 1, "jan": 1, "februar": 2, "february": 2, "feb": 2,
    "märz": 3, "maerz": 3, "march": 3, "mär": 3, "mrz": 3, "mar": 3, "april": 4, "apr": 4,
    "mai": 5, "may": 5, "juni": 6, "june": 6, "jun": 6, "juli": 7, "july": 7, "jul": 7,
    "august": 8, "aug": 8, "september": 9, "sept": 9, "sep": 9, "oktober": 10,
    "october": 10, "okt": 10, "oct": 10, "november": 11, "nov": 11, "dezember": 12,
    "december": 12, "dez": 12, "dec": 12,
}
_MONTH = re.compile(r"\b(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\b")
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})(?::(\d{2}))?(?:[ \t]?+([ap])\.?[ \t]?m\b\.?)?")
_NUMERIC_DATE = re.compile(r"\b(\d{1,2})\.[ \t]?(\d{1,2})\.[ \t]?(\d{4}|\d{2})\b")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_YEAR = re.compile(r"\b(\d{4})\b")
_DAY = re.compile(r"\b(\d{1,2})\b")
_OFFSET = re.compile(r"\b(?:gmt|utc)[ \t]?([+-])(\d{1,2})(?::?(\d{2}))?"  # GMT+1, UTC-05:00
                     r"|([+-])(\d{2}):?(\d{2})\b")  # +0100
_ZONE_NAMES = {
    "utc": 0, "gmt": 0, "ut": 0, "wet": 0, "west": 1, "bst": 1, "cet": 1, "mez": 1,
    "cest": 2, "mesz": 2, "eet": 2, "eest": 3, "est": -5, "edt": -4, "cst": -6, "cdt": -5,
    "mst": -7, "mdt": -6, "pst": -8, "pdt": -7,
}
_ZONE_NAME = re.compile(r"\b(" + "|".join(_ZONE_NAMES) + r")\b")


@dataclass(frozen=True, slots=True)
class ForwardedOriginal:
    """The message a forward carries; addresses normalized as in ParsedMessage."""

    from_address: str | None  # None when the block names no readable address
    from_name: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str  # "" when the block has no Subject
    # Aware when the date names its zone (an attached message, Thunderbird, Apple Mail);
    # naive where the block gives the wall-clock time only (Outlook, Gmail write it in the
    # forwarder's time zone, which nothing names: Exchange stamps every Date in UTC).
    sent_at: dt.datetime | None
    message_id: str | None  # an attached message's key (as parse stores one); inline: None
    source: Source
    further_originals: int = 0  # messages attached after this one

    def as_json(self) -> dict[str, Any]:
        """For storage; from_json reads it back."""
        return {"from_address": self.from_address, "from_name": self.from_name,
                "to": list(self.to), "cc": list(self.cc), "subject": self.subject,
                "sent_at": self.sent_at.isoformat() if self.sent_at else None,
                "message_id": self.message_id, "source": self.source,
                "further_originals": self.further_originals}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ForwardedOriginal:
        sent_at = data.get("sent_at")
        return cls(data.get("from_address"), data.get("from_name"), tuple(data.get("to", ())),
                   tuple(data.get("cc", ())), data.get("subject", ""),
                   dt.datetime.fromisoformat(sent_at) if sent_at else None,
                   data.get("message_id"), data.get("source", "attachment"),
                   int(data.get("further_originals", 0)))


def forwarded_original(subject: str, body: str, *, raw: bytes = b"",
                       tree: MimeTree | None = None,
                       limits: Limits | None = None) -> ForwardedOriginal | None:
    """The original this mail forwards, or None when it forwards none (see the module).

    `subject` and `body` are the forward's own, as parse_message reads them; `tree` is its
    MIME tree, built from `raw`, where attached messages were noted.
    """
    found = _inline(subject, body[:SCAN_CHARS])
    if found is not None:
        return found or None  # False: the body is a reply's
    if tree is None or not tree.attached or _is_report(tree.message):
        return None
    return _attached(raw, tree.attached[0], limits, len(tree.attached) - 1)


def _is_report(message: Message) -> bool:
    """A delivery or read report returns a message; it forwards none."""
    return message.get_content_type() == "multipart/report"


# --- the body -----------------------------------------------------------------------------

def _inline(subject: str, text: str) -> ForwardedOriginal | Literal[False] | None:
    """The first block's original; False when a reply's text comes first; None: no block."""
    text = "\n" + text  # so that the first line starts after a line break too
    for candidate in _CANDIDATE.finditer(text):
        lines = _lines(text, candidate.start() + 1)
        depth, line = next(lines)
        folded = line.casefold()
        marker = _marker(line, folded)
        if marker is not None:
            says_forward, client = marker
            fields = _block(lines)
            if not fields:
                continue  # a forward line and no field: text that looks like one
            if not says_forward and not _subject_says_forward(subject):
                return False
            return _original(fields, client)
        if _label(line)[0] == "from":
            fields = _block(_lines(text, candidate.start() + 1))
            if list(fields)[:2] == ["from", "date"]:  # Outlook's block without a line above
                return _original(fields, "inline:outlook") \
                    if _subject_says_forward(subject) else False
        if depth or _attribution(folded, lines):
            return False
    return None


def _lines(text: str, start: int) -> Iterator[tuple[int, str]]:
    """(quote depth, text) of each line from `start`, the text cleaned of invisible marks."""
    position = start
    for _ in range(MAX_BLOCK_LINES + 1):
        if position > len(text):
            return
        end = text.find("\n", position)
        end = len(text) if end < 0 else end
        yield _unquote(text[position:end])
        position = end + 1


def _unquote(line: str) -> tuple[int, str]:
    """The line's quote depth (its leading `>`) and its text without them."""
    depth = index = 0
    limit = min(len(line), MAX_QUOTE_DEPTH * 2)
    while index < limit and line[index] in "> \t":
        depth += line[index] == ">"
        index += 1
    return depth, line[index:].translate(_INVISIBLE).strip()


def _marker(line: str, folded: str) -> tuple[bool, Source] | None:
    """(whether the line says "forward", the client) if the line heads a block."""
    if len(line) > _MAX_MARKER:
        return None
    if folded in _APPLE_MARKERS:
        return True, "inline:apple-mail"
    if not (line.startswith("--") and line.endswith("--")):
        return None
    says_forward = _MARKERS.get(folded.strip("-").strip())
    if says_forward is None:
        return None
    dashes = len(line) - len(line.lstrip("-"))
    if says_forward:  # Gmail writes ten dashes, Thunderbird eight
        return True, "inline:gmail" if dashes >= 10 else "inline:thunderbird"
    # Outlook writes "-----Original Message-----", Thunderbird "-------- Original ... ---"
    return False, "inline:outlook" if dashes == 5 else "inline:thunderbird"


def _label(line: str) -> tuple[str | None, str]:
    """(field, value) when the line starts with a known label, else (None, line)."""
    head, colon, rest = line[:MAX_FIELD_CHARS].partition(":")
    if not colon or len(head) > 30:
        return None, line
    return _LABELS.get(head.strip(" *").casefold()), rest.strip(" *")


def _block(lines: Iterator[tuple[int, str]]) -> dict[str, str]:
    """The known fields of a header block, in the order written; {} when there is none."""
    fields: dict[str, str] = {}
    depth: int | None = None
    last: str | None = None
    blank_lines = 0
    for line_depth, line in lines:
        if not line:
            if fields or blank_lines == 3:
                break  # the empty line after the fields; or too much space for a block
            blank_lines += 1
            continue
        if depth is None:
            depth = line_depth
        elif line_depth != depth:
            break
        name, value = _label(line)
        if name is None:
            if last in _ADDRESS_FIELDS and _continues(fields[last], line):
                fields[last] = f"{fields[last]} {line}"[:MAX_FIELD_CHARS]
                continue
            break  # the original's text, where no empty line came first
        for field, text in _split_inline(name, value):
            if field in fields:
                return fields  # a second From or Subject: the next block begins
            if field != "other":
                fields[field] = text
            last = field
    return fields


def _split_inline(name: str, value: str) -> list[tuple[str, str]]:
    """A field line holding further fields ("Von: Bob <b@x> Gesendet: ... Betreff: ...", as
    HTML without line breaks renders) split at them. A Subject is never split: its words
    are the sender's, "Betreff: Termin An: alle" is one subject."""
    if name in ("subject", "other"):
        return [(name, value)]
    found: list[tuple[str, str]] = []
    start = 0
    current = name
    for label in _INLINE_LABEL.finditer(value):
        following = _LABELS[label.group(1).casefold()]
        if following == current or any(following == seen for seen, _ in found):
            continue
        found.append((current, value[start:label.start()].strip()))
        current, start = following, label.end()
        if following == "subject":
            break
    found.append((current, value[start:].strip()))
    return found


def _continues(value: str, line: str) -> bool:
    """Whether `line` goes on with an address field that a client wrapped."""
    return (not value or value.count("<") > value.count(">")
            or value.count("[") > value.count("]") or value.endswith((",", ";"))
            or line.startswith(("<", "[")))


def _attribution(folded: str, lines: Iterator[tuple[int, str]]) -> bool:
    """Whether the line (with the next, where a client wrapped it) is a reply's
    "On <date>, <name> wrote:" or "Am <date> schrieb <name>:"."""
    if not folded.startswith(("on ", "am ")) or len(folded) > _MAX_ATTRIBUTION:
        return False
    if not folded.endswith(":"):
        _, following = next(lines, (0, ""))
        folded = f"{folded} {following.casefold()}"[:_MAX_ATTRIBUTION]
        if not folded.endswith(":"):
            return False
    return (folded.startswith("on ") and folded.endswith("wrote:")) or (
        folded.startswith("am ") and " schrieb" in folded)


def _subject_says_forward(subject: str) -> bool:
    """Whether the subject's first prefix, after tags such as [EXT], is a forward's."""
    text = subject[:200].lstrip()
    for _ in range(10):
        close = text.find("]") if text.startswith("[") else -1
        if close < 0:
            break
        text = text[close + 1:].lstrip()
    prefix = _PREFIX.match(text)
    return prefix is not None and prefix.group(1).casefold() in _FORWARD_PREFIXES


def _original(fields: dict[str, str], client: Source) -> ForwardedOriginal:
    address, name = _sender(fields.get("from", ""))
    written = fields.get("date")
    return ForwardedOriginal(
        from_address=address, from_name=name,
        to=_addresses(fields.get("to", "")), cc=_addresses(fields.get("cc", "")),
        subject=fields.get("subject", ""),
        sent_at=written_date(written) if written else None,
        message_id=None, source=client)


def _sender(value: str) -> tuple[str | None, str | None]:
    """(address, name) of `Name <addr>`, `Name [mailto:addr]`, `"addr" <addr>`, `addr`."""
    mailto = _MAILTO.search(value)
    if mailto is not None:
        spec, name = mailto.group(1), value[:mailto.start()]
    elif (angle := _unquoted_index(value, "<")) >= 0:
        close = value.find(">", angle)
        spec, name = value[angle + 1:close if close >= 0 else len(value)], value[:angle]
    elif (bare := _BARE_ADDRESS.search(value)) is not None:
        spec, name = bare.group(0), value[:bare.start()]
    else:
        spec, name = "", value
    spec = spec.strip()
    if spec.casefold().startswith("mailto:"):
        spec = spec[len("mailto:"):]
    address = normalize_address(spec) if "@" in spec else None
    name = name.strip().strip("\"'*()").strip()
    if not name or (address is not None and normalize_address(name) == address):
        return address, None
    return address, name


def _unquoted_index(value: str, wanted: str) -> int:
    quoted = False
    for index, char in enumerate(value):
        if char == '"':
            quoted = not quoted
        elif char == wanted and not quoted:
            return index
    return -1


def _addresses(value: str) -> tuple[str, ...]:
    """The readable addresses of a To or Cc line (names without one are passed over)."""
    value = _MAILTO.sub(lambda found: f"<{found.group(1)}>", value)
    found: dict[str, None] = {}
    for element in split_address_list(value):
        for spec in element_addresses(element):
            spec = spec.removeprefix("mailto:")
            if "@" in spec and (address := normalize_address(spec)) is not None:
                found.setdefault(address)
    return tuple(found)


def written_date(text: str) -> dt.datetime | None:
    """A date as a client writes it in a forward's block; None if not readable.

    German and English month names, 12- and 24-hour times, `16.03.2026`, and a zone as
    `+0100`, `GMT+1` or a name (`CET`, `MEZ`): aware with a zone, naive without.
    """
    text = text[:200].translate(_INVISIBLE).casefold()
    time = _TIME.search(text)
    if time is None:
        return None
    before, after = text[:time.start()], text[time.end():]
    numeric = _NUMERIC_DATE.search(before)
    iso = _ISO_DATE.search(before)
    if numeric is not None:
        day, month, year = (int(part) for part in numeric.groups())
        year += 2000 if year < 100 else 0
    elif iso is not None:
        year, month, day = (int(part) for part in iso.groups())
    else:
        month_name, year_found = _MONTH.search(before), _YEAR.search(before)
        if month_name is None or year_found is None:
            return None
        month, year = _MONTHS[month_name.group(1)], int(year_found.group(1))
        rest = before[:year_found.start()] + " " + before[year_found.end():]
        day_found = _DAY.search(rest)
        if day_found is None:
            return None
        day = int(day_found.group(1))
    hour, minute = int(time.group(1)), int(time.group(2))
    second = int(time.group(3) or 0)
    if time.group(4) and 1 <= hour <= 12:  # a.m. / p.m. (after 17:22, "am" is German)
        hour = hour % 12 + (12 if time.group(4) == "p" else 0)
    tzinfo = _zone(after)
    try:
        value = dt.datetime(year, month, day, hour, minute, second, tzinfo=tzinfo)
    except ValueError:
        return None
    return value if 1970 <= value.year <= 9998 else None


def _zone(text: str) -> dt.tzinfo | None:
    offset = _OFFSET.search(text)
    if offset is not None:
        sign, hours, minutes = offset.group(1, 2, 3) if offset.group(1) else offset.group(4, 5, 6)
        delta = dt.timedelta(hours=int(hours), minutes=int(minutes or 0))
        if delta >= dt.timedelta(hours=15):
            return None
        return dt.timezone(-delta if sign == "-" else delta)
    name = _ZONE_NAME.search(text)
    if name is not None:
        return dt.timezone(dt.timedelta(hours=_ZONE_NAMES[name.group(1)]))
    return None


# --- an attached message ------------------------------------------------------------------

def _attached(raw: bytes, span: AttachedMessage, limits: Limits | None,
              further: int) -> ForwardedOriginal | None:
    """The attached message's own header fields, read within the message's limits."""
    # parse.py imports this module; its decoders are imported when first needed. The Date
    # is read by parse's own reader, so an attached message's date is the one it stores.
    from crm_mailer.mail.parse import (
        DEFAULT_LIMITS,
        MAX_TEXT_FIELD,
        _sent_at,
        decode_header_text,
        header_addresses,
    )

    limits = limits or DEFAULT_LIMITS
    try:
        block = read_header_block(_head(raw, span, limits.max_header_size),
                                  max_size=limits.max_header_size,
                                  max_fields=limits.max_headers)
    except MessageRefused:
        return None
    if not any(block.first(name) is not None for name in _ORIGINAL_FIELDS):
        return None  # no field that says anything about the original

    def addresses(name: str) -> tuple[str, ...]:
        try:
            return header_addresses(block, name, limits)
        except MessageRefused:  # past the limit for addresses: not read, as in parse
            return ()

    senders = addresses("from")
    from_field = block.first("from")
    name = _sender(decode_header_text(unfold(from_field)[:MAX_FIELD_CHARS]))[1] \
        if from_field is not None else None
    subject = block.first("subject")
    message_id = unfold(block.first("message-id") or b"")
    return ForwardedOriginal(
        from_address=senders[0] if len(senders) == 1 else None,
        from_name=name,
        to=addresses("to"), cc=addresses("cc"),
        subject=decode_header_text(unfold(subject)[:MAX_TEXT_FIELD]) if subject else "",
        sent_at=_sent_at(block.first("date")),
        message_id=message_id_key(message_id) if message_id.strip(b" \t<>") else None,
        source="attachment", further_originals=further)


def _head(raw: bytes, span: AttachedMessage, max_header_size: int) -> bytes:
    """The start of the attached message, transfer encoding undone: enough for its header."""
    wanted = max_header_size + 4  # the header and the empty line after it
    if span.encoding == "base64":
        # 4 characters per 3 bytes, plus line breaks: 3/2 of the bytes is more than enough.
        text = _NOT_BASE64.sub(b"", raw[span.start:min(span.end, span.start + wanted * 3 // 2)])
        try:
            data = binascii.a2b_base64(text[:len(text) // 4 * 4])
        except binascii.Error:
            return b""
    elif span.encoding == "quoted-printable":
        data = binascii.a2b_qp(raw[span.start:min(span.end, span.start + wanted * 3)])
    else:
        data = raw[span.start:min(span.end, span.start + wanted)]
    if data.startswith(b"From "):  # an mbox separator line, as Apple Mail once wrote one
        data = data[data.find(b"\n") + 1:] if b"\n" in data else b""
    return data[:wanted]

