"""Bytes -> ParsedMessage: decoded headers, text body and attachment list.

The header block (header_block.py) and the MIME tree (mime_tree.py) are read in linear
time within the limits; past a limit, MessageRefused says which. This module adds the
leniency real mail needs: raw 8-bit headers and mislabelled charsets are read as UTF-8,
else Windows-1252, else Latin-1, so a reading is always found and U+FFFD never appears.
"""

from __future__ import annotations

import codecs
import datetime as dt
import email.header
import email.policy
import email.utils
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.message import EmailMessage, Message

from crm_mailer.errors import MessageMalformed, SenderNotProven
from crm_mailer.mail.addresses import element_addresses, normalize_address, split_address_list
from crm_mailer.mail.forward import ForwardedOriginal, forwarded_original
from crm_mailer.mail.header_block import HeaderBlock, read_header_block, unfold
from crm_mailer.mail.html import html_to_text
from crm_mailer.mail.machine import MachineMail, machine_mail
from crm_mailer.mail.mime_tree import MimeTree, mime_tree
from crm_mailer.mail.thread import message_id_key, thread_references

MAX_TEXT_FIELD = 16_384
MAX_HTML_RENDERED = 100_000  # characters of an HTML body rendered as text
BYTES_PER_ADDRESS = 128  # of an address header, per address it may hold
_MAX_ATTACHMENTS = 1000
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_LINEBREAK = re.compile(r"[\r\n]+")
# From the first blank of a run only, and possessive: linear (20,000 spaces between two
# words took 1.3 s with a backtracking pattern).
_TRAILING_BLANKS = re.compile(r"(?<![^\S\n])[^\S\n]++$", re.MULTILINE)
_EMPTY_LINES = re.compile(r"\n{3,}")
_TRACE_HEADER = re.compile(rb"^(received|return-path|delivered-to|x-original-to):", re.IGNORECASE)
_LINE_END = re.compile(rb"\r\n|\r|\n")
_HASH_CHUNK = 1 << 18
_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes the ASCII codec could not read
_FALLBACK_CHARSETS = ("utf-8", "cp1252", "latin-1")
DERIVED_ID_DOMAIN = "derived.crm-mailer.invalid"


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attached file as the recipient sees it."""

    filename: str | None
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """What crm_mailer reads from one message; addresses are normalized (lower case, IDNA)."""

    message_id: str
    message_id_derived: bool
    subject: str
    from_address: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    sent_at: dt.datetime | None
    body: str
    attachments: tuple[Attachment, ...] = ()
    defects: tuple[str, ...] = field(default=())
    from_addresses: tuple[str, ...] = ()  # every From address; from_address only if one
    from_fields: int = 1
    references: tuple[str, ...] = ()  # keys of the messages it replies to, nearest first
    forwarded: ForwardedOriginal | None = None  # the original a forward carries
    machine: MachineMail | None = None  # set when a machine wrote it (auto-reply, report, list)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one message may hold; past a limit it is refused with a reply naming it."""

    max_header_size: int = 262_144
    max_headers: int = 1000
    max_addresses_per_header: int = 1000
    max_mime_depth: int = 50
    max_mime_parts: int = 1000


DEFAULT_LIMITS = Limits()


def decode_bytes(data: bytes, declared: str | None = None) -> str:
    """Decode with the declared charset if it reads cleanly, else UTF-8, Windows-1252, Latin-1."""
    candidates: list[str] = []
    if declared:
        try:
            codec = codecs.lookup(declared.split("*")[0].strip())
        except (LookupError, ValueError):  # unknown, or a NUL in the name
            pass
        else:
            if codec._is_text_encoding:  # not "hex", "base64", "rot13" and the like
                candidates.append(codec.name)
    for charset in (*candidates, *_FALLBACK_CHARSETS):
        try:
            return data.decode(charset)
        except Exception:  # UnicodeError, and whatever an odd codec (punycode) raises
            continue
    raise AssertionError("latin-1 decodes every byte string")  # pragma: no cover


def clean_text(text: str) -> str:
    """Text safe for any database: stray surrogates re-read as bytes, NUL characters dropped."""
    if _SURROGATE.search(text):
        text = decode_bytes(text.encode("utf-8", "surrogateescape"))
    return text.replace("\x00", "")


def _raw_header_bytes(msg: Message, name: str) -> bytes | None:
    """The first header `name` as the bytes on the wire, unfolded; None if absent."""
    for key, value in msg.raw_items():
        if key.lower() == name:
            text = value if isinstance(value, str) else str(value)
            text = _LINEBREAK.sub(" ", _FOLD.sub("", text)).strip()
            return text.encode("utf-8", "surrogateescape")
    return None


def header_block(raw: bytes, limits: Limits = DEFAULT_LIMITS, *,
                 smtp: bool = False) -> HeaderBlock:
    """The top-level header block within the limits; raises MessageRefused past one.

    `smtp`: the bytes came over SMTP, where only CRLF ends a line.
    """
    return read_header_block(raw, max_size=limits.max_header_size,
                             max_fields=limits.max_headers,
                             line_ending=b"\r\n" if smtp else None)


def decode_header_text(raw: bytes) -> str:
    """Decode an unstructured header (RFC 2047 words and raw 8-bit text) to a str."""
    # Latin-1 maps bytes 1:1 to code points, so decode_header hands the raw bytes back intact.
    try:
        chunks = email.header.decode_header(raw.decode("latin-1"))
    except (HeaderParseError, ValueError, AssertionError):
        return clean_text(decode_bytes(raw))
    parts: list[str] = []
    for chunk, charset in chunks:
        data = chunk if isinstance(chunk, bytes) else chunk.encode("latin-1", "replace")
        parts.append(decode_bytes(data, charset))
    return clean_text("".join(parts))


def header_addresses(block: HeaderBlock, name: str, limits: Limits = DEFAULT_LIMITS,
                     ) -> tuple[str, ...]:
    """Normalized addresses of every `name` field, in order, without duplicates."""
    found: dict[str, None] = {}
    count = 0
    for value in block.values(name):
        # Reading addresses costs a pass per character: a field longer than its allowed
        # addresses can need is refused before that pass.
        if len(value) > limits.max_addresses_per_header * BYTES_PER_ADDRESS:
            raise MessageMalformed(
                f"{name.title()} header is longer than "
                f"{limits.max_addresses_per_header * BYTES_PER_ADDRESS} bytes "
                "(max_addresses_per_header)")
        elements = split_address_list(decode_bytes(unfold(value)))
        count += len(elements)
        if count > limits.max_addresses_per_header:
            raise MessageMalformed(
                f"{name.title()} header holds more than {limits.max_addresses_per_header} "
                "addresses (max_addresses_per_header)")
        for element in elements:
            for spec in element_addresses(element):
                if (address := normalize_address(spec)) is not None:
                    found.setdefault(address)
    return tuple(found)


def sender_claim(block: HeaderBlock, limits: Limits = DEFAULT_LIMITS) -> str | None:
    """The one From address, None when there is none; refused when it is ambiguous.

    A mail client shows one author; with two From fields, or two addresses in one,
    which one it shows is the client's guess, so no claim is read from it.
    """
    fields = block.values("from")
    if len(fields) > 1:
        raise SenderNotProven(f"Message has {len(fields)} From header fields; "
                              "the sender is ambiguous")
    addresses = header_addresses(block, "from", limits)
    if len(addresses) > 1:
        raise SenderNotProven(f"From header holds {len(addresses)} addresses; "
                              "the sender is ambiguous")
    return addresses[0] if addresses else None


def message_key(block: HeaderBlock | None, raw_message: bytes) -> tuple[str, bool]:
    """The Message-ID key, or one derived from the bytes (then True)."""
    value = block.first("message-id") if block is not None else None
    if value is not None:
        value = unfold(value)
        if value.strip(b" \t<>"):
            return message_id_key(value), False
    return derive_message_id(raw_message), True


def derive_message_id(raw_message: bytes) -> str:
    """A stable Message-ID from the message bytes, ignoring trace headers that relays prepend.

    The hash is of the bytes after those headers with every line end read as LF (so
    CRLF and LF copies agree), taken in chunks: a copy of the message is never made.
    """
    position = _after_trace_headers(raw_message)
    digest = hashlib.sha256()
    end = len(raw_message)
    while position < end:
        stop = min(end, position + _HASH_CHUNK)
        if raw_message[stop - 1:stop] == b"\r" and stop < end:
            stop -= 1  # keep a CRLF that straddles the chunk together
        chunk = raw_message[position:stop].replace(b"\r\n", b"\n")
        digest.update(chunk.replace(b"\r", b"\n") if b"\r" in chunk else chunk)
        position = stop
    if raw_message[position - 1:position] not in (b"\n", b"\r") and end > 0 \
            and _after_trace_headers(raw_message) < end:
        digest.update(b"\n")  # the last line counts as ended
    return f"{digest.hexdigest()[:40]}@{DERIVED_ID_DOMAIN}"


def _after_trace_headers(raw: bytes) -> int:
    """Where the message starts once the trace headers relays prepend are skipped."""
    position = 0
    in_trace = False
    while position < len(raw):
        line_end = _LINE_END.search(raw, position)
        next_line = line_end.end() if line_end else len(raw)
        line = raw[position:min(next_line, position + 64)]
        if _TRACE_HEADER.match(line) or (in_trace and line[:1] in (b" ", b"\t")):
            in_trace = True
            position = next_line
        else:
            break
    return position


def _sent_at(raw: bytes | None) -> dt.datetime | None:
    """The Date header as an aware datetime; None if absent or unreadable."""
    if raw is None:
        return None
    try:
        value = email.utils.parsedate_to_datetime(unfold(raw)[:200].decode("ascii", "replace"))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if value.tzinfo is None:  # "-0000": the time is UTC, the zone unknown
        value = value.replace(tzinfo=dt.UTC)
    if not 1970 <= value.year <= 9998:
        return None
    return value


def _decoded_payload(part: Message) -> bytes | None:
    """The part's content with its transfer encoding undone; None for a container part."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # broken base64 and the like: the stdlib is lenient, but not always
        return None
    return payload if isinstance(payload, bytes) else None


def _part_text(part: Message) -> str:
    """A text part's content as str, whatever its declared charset claims."""
    payload = _decoded_payload(part)
    if payload is None:
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    return decode_bytes(payload, part.get_content_charset())


def _leaves(part: Message) -> Iterator[Message]:
    """Leaf parts in order; an attached message/rfc822 is one leaf, not descended into."""
    if part.get_content_maintype() == "multipart":
        payload = part.get_payload()
        if isinstance(payload, list):
            for sub in payload:
                if isinstance(sub, Message):
                    yield from _leaves(sub)
            return
    yield part


def _is_attachment(part: Message) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    return disposition == "attachment" or part.get_filename() is not None or (
        part.get_content_maintype() != "text"
    )


def _body_part(msg: Message) -> Message | None:
    """The part a reader sees as the message text: text/plain preferred over text/html."""
    if isinstance(msg, EmailMessage):
        try:
            found = msg.get_body(preferencelist=("plain", "html"))
        except Exception:
            found = None
        if found is not None:
            return found
    for subtype in ("plain", "html"):
        for leaf in _leaves(msg):
            if leaf.get_content_type() == f"text/{subtype}" and not _safe(_is_attachment, leaf):
                return leaf
    return None


def _safe(check: object, part: Message) -> bool:
    try:
        return bool(check(part))  # type: ignore[operator]
    except Exception:
        return True


def _body(part: Message | None) -> str:
    if part is None:
        return ""
    text = _part_text(part)
    if part.get_content_subtype() == "html":
        # Rendering costs about a microsecond per character: the start of a long HTML
        # body is its text as a reader sees it first; the raw message keeps the rest.
        text = html_to_text(text[:MAX_HTML_RENDERED])
    return _tidy(text)


def _tidy(text: str) -> str:
    """Unify line ends, drop trailing blanks, keep at most one empty line in a row."""
    text = clean_text(text).replace("\r\n", "\n").replace("\r", "\n")
    text = _TRAILING_BLANKS.sub("", text)  # regexes, not a loop: a body has 100,000s of lines
    return _EMPTY_LINES.sub("\n\n", text).strip("\n")


def _attachment_leaves(msg: Message, body_part: Message | None) -> Iterator[Message]:
    """The leaves a reader sees as attached files, in order, at most _MAX_ATTACHMENTS."""
    count = 0
    for leaf in _leaves(msg):
        if count >= _MAX_ATTACHMENTS:
            return
        if leaf is body_part or (leaf is msg and body_part is not None):
            continue
        if not _safe(_is_attachment, leaf):
            continue
        count += 1
        yield leaf


def _attachments(msg: Message, body_part: Message | None,
                 size_header: str) -> tuple[Attachment, ...]:
    return tuple(Attachment(_filename(leaf), leaf.get_content_type(),
                            _payload_size(leaf, size_header))
                 for leaf in _attachment_leaves(msg, body_part))


def attachment_contents(raw: bytes) -> tuple[tuple[Attachment, bytes], ...]:
    """Each attachment of a stored message with its decoded bytes, in the stored order.

    For reading back what was accepted (its limits were checked then), not for what comes
    in: the standard library's parser keeps the payloads the MIME tree leaves out. Its
    reading of a broken structure can differ from the tree's, so callers compare the
    names and types with the list stored at ingestion.
    """
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    found = []
    for leaf in _attachment_leaves(msg, _body_part(msg)):
        payload = _decoded_payload(leaf)
        if payload is None:  # an attached message: its bytes as they are
            inner = leaf.get_payload()
            payload = (inner[0].as_bytes() if isinstance(inner, list) and inner
                       and isinstance(inner[0], Message) else b"")
        found.append((Attachment(_filename(leaf), leaf.get_content_type(), len(payload)),
                      payload))
    return tuple(found)


def _filename(part: Message) -> str | None:
    """The attachment's file name: RFC 2231 or RFC 2047 encoded, any charset, or raw 8-bit."""
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        raw = _raw_header_bytes(part, header)
        if raw is None:
            continue
        # A compat32 Message hands RFC 2231 values back undecoded, with their charset,
        # so a wrong or unknown charset can fall back instead of becoming U+FFFD.
        holder = Message()
        holder[header] = raw.decode("latin-1")
        value = holder.get_param(param, header=header)
        if isinstance(value, tuple):
            charset, _, text = value
            name = clean_text(decode_bytes(text.encode("latin-1", "replace"), charset))
        elif isinstance(value, str):
            name = decode_header_text(value.encode("latin-1", "replace"))
        else:
            continue
        name = name.strip()
        if name:
            return name
    return None


def _payload_size(part: Message, size_header: str) -> int:
    cut = part.get(size_header)
    if cut is not None:  # left out before parsing (or an attached message): size noted
        return int(str(cut))
    payload = _decoded_payload(part)
    return len(payload) if payload is not None else 0


def _structure(raw: bytes, limits: Limits, block: HeaderBlock) -> MimeTree:
    """The MIME tree (see mime_tree): payloads left out, attached messages noted."""
    return mime_tree(raw, block, max_depth=limits.max_mime_depth,
                     max_parts=limits.max_mime_parts, max_header_size=limits.max_header_size)


def _content(msg: Message, size_header: str) -> tuple[str, tuple[Attachment, ...]]:
    body_part = _body_part(msg)
    return _body(body_part), _attachments(msg, body_part, size_header)


def _first_text(block: HeaderBlock, name: str) -> str:
    """The field's text; no more than MAX_TEXT_FIELD bytes of it are read (as a mail
    client shows a subject: its start), which keeps decoding fast."""
    value = block.first(name)
    return decode_header_text(unfold(value)[:MAX_TEXT_FIELD]) if value is not None else ""


def parse_message(raw: bytes, limits: Limits = DEFAULT_LIMITS,
                  block: HeaderBlock | None = None, *,
                  envelope_sender: str | None = None) -> ParsedMessage:
    """Parse raw message bytes; raises only MessageRefused, for input past a limit.

    `block` is the header block when the caller has read it already; `envelope_sender`
    is MAIL FROM as received ("" for the null sender), None when unknown (a file).
    """
    if block is None:
        block = header_block(raw, limits)
    from_addresses = header_addresses(block, "from", limits)
    message_id, derived = message_key(block, raw)
    parsable = block.message_for_parser(raw)
    tree = _structure(parsable, limits, block)
    body, attachments = _content(tree.message, tree.size_header)
    subject = _first_text(block, "subject")
    return ParsedMessage(
        message_id=message_id,
        message_id_derived=derived,
        subject=subject,
        from_address=from_addresses[0] if len(from_addresses) == 1 else None,
        from_addresses=from_addresses,
        from_fields=len(block.values("from")),
        to=header_addresses(block, "to", limits),
        cc=header_addresses(block, "cc", limits),
        sent_at=_sent_at(block.first("date")),
        body=body,
        attachments=attachments,
        references=thread_references(block),
        forwarded=forwarded_original(subject, body, raw=parsable, tree=tree, limits=limits),
        machine=machine_mail(block, from_addresses=from_addresses,
                             envelope_sender=envelope_sender),
    )
