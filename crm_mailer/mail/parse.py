"""Bytes -> ParsedMessage: decoded headers, text body and attachment list, never an exception.

The standard library parses (policy.default); this module only adds the leniency real
mail needs: raw 8-bit headers and mislabelled charsets are read as UTF-8, else
Windows-1252, else Latin-1, so a reading is always found and U+FFFD never appears.
"""

from __future__ import annotations

import codecs
import datetime as dt
import email.header
import email.policy
import email.utils
import functools
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser

from crm_mailer.mail.addresses import normalize_address
from crm_mailer.mail.html import html_to_text


class _CachingHeaderRegistry(HeaderRegistry):
    """policy.default's header registry, remembering what it parsed.

    The stdlib parses a header anew on every access (Content-Type a dozen times per
    message, inside the parser and get_body too): that was most of the parse time.
    Header objects are immutable strings, so handing out the same one again is safe.
    """

    _MAX_VALUE = 2000  # long values are rare; keep the cache small

    def __init__(self) -> None:
        super().__init__()
        self._parse = functools.lru_cache(maxsize=4096)(super().__call__)

    def __call__(self, name: str, value: str) -> BaseHeader:
        if len(value) > self._MAX_VALUE:
            return super().__call__(name, value)
        return self._parse(name.lower(), value)


_POLICY = email.policy.default.clone(header_factory=_CachingHeaderRegistry())
# policy.default builds a header object on every access: ~0.5 ms per MIME part. Beyond
# this many boundary lines (only hostile or machine-made mail has them) the structure is
# read with compat32, ~20 times faster; headers are decoded by this module either way.
_MAX_BOUNDARY_LINES = 500
_MAX_ATTACHMENTS = 1000
# The stdlib checks every line against every open boundary, so deep nesting costs
# depth squared; real mail nests a few levels, forwards of forwards a few dozen.
_MAX_BOUNDARIES = 200
_BOUNDARY_PARAM = re.compile(rb"boundary\s*=", re.IGNORECASE)
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_LINEBREAK = re.compile(r"[\r\n]+")
_TRACE_HEADER = re.compile(rb"^(received|return-path|delivered-to|x-original-to):", re.IGNORECASE)
_ANGLE_ID = re.compile(r"<([^<>\s]+)>")
_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes the ASCII codec could not read
_MAX_MESSAGE_ID = 255
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


def decode_bytes(data: bytes, declared: str | None = None) -> str:
    """Decode with the declared charset if it reads cleanly, else UTF-8, Windows-1252, Latin-1."""
    candidates: list[str] = []
    if declared:
        try:
            candidates.append(codecs.lookup(declared.split("*")[0].strip()).name)
        except LookupError:
            pass
    for charset in (*candidates, *_FALLBACK_CHARSETS):
        try:
            return data.decode(charset)
        except UnicodeDecodeError:
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


def _addresses(msg: Message, name: str, defects: list[str]) -> tuple[str, ...]:
    """Normalized addresses of an address header, in order, without duplicates."""
    raw = _raw_header_bytes(msg, name)
    if raw is None:
        return ()
    text = decode_bytes(raw)
    found: list[str] = []
    try:
        header = _POLICY.header_factory(name, text)
        specs = [addr.addr_spec for addr in getattr(header, "addresses", ())]
    except Exception:  # the stdlib parser has crashed on hostile headers before
        defects.append(f"{name}: unparseable, read leniently")
        specs = [spec for _, spec in email.utils.getaddresses([text])]
    for spec in specs:
        normalized = normalize_address(spec)
        if normalized and normalized not in found:
            found.append(normalized)
    return tuple(found)


def _message_id(msg: Message, raw_message: bytes) -> tuple[str, bool]:
    """The Message-ID without angle brackets, or one derived from the bytes (then True)."""
    raw = _raw_header_bytes(msg, "message-id")
    if raw is not None:
        text = raw.decode("ascii", "replace")
        match = _ANGLE_ID.search(text)
        candidate = match.group(1) if match else "".join(text.split()).strip("<>")
        candidate = "".join(ch for ch in candidate if ch.isprintable())
        if candidate:
            if len(candidate) > _MAX_MESSAGE_ID:
                digest = hashlib.sha256(candidate.encode()).hexdigest()
                return f"{digest}@long-id.crm-mailer.invalid", False
            return candidate, False
    return derive_message_id(raw_message), True


def derive_message_id(raw_message: bytes) -> str:
    """A stable Message-ID from the message bytes, ignoring trace headers that relays prepend."""
    lines = raw_message.splitlines(keepends=True)
    start = 0
    while start < len(lines):
        if _TRACE_HEADER.match(lines[start]):
            start += 1
            while start < len(lines) and lines[start][:1] in (b" ", b"\t"):
                start += 1
        else:
            break
    content = b"".join(line.rstrip(b"\r\n") + b"\n" for line in lines[start:])
    return f"{hashlib.sha256(content).hexdigest()[:40]}@{DERIVED_ID_DOMAIN}"


def _sent_at(msg: Message) -> dt.datetime | None:
    """The Date header as an aware datetime; None if absent or unreadable."""
    raw = _raw_header_bytes(msg, "date")
    if raw is None:
        return None
    try:
        value = email.utils.parsedate_to_datetime(raw.decode("ascii", "replace"))
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
        text = html_to_text(text)
    return _tidy(text)


def _tidy(text: str) -> str:
    """Unify line ends, drop trailing blanks, keep at most one empty line in a row."""
    text = clean_text(text)
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip("\n")


def _attachments(msg: Message, body_part: Message | None) -> tuple[Attachment, ...]:
    found: list[Attachment] = []
    for leaf in _leaves(msg):
        if len(found) >= _MAX_ATTACHMENTS:
            break
        if leaf is body_part or (leaf is msg and body_part is not None):
            continue
        if not _safe(_is_attachment, leaf):
            continue
        found.append(Attachment(_filename(leaf), leaf.get_content_type(), _payload_size(leaf)))
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


def _payload_size(part: Message) -> int:
    payload = _decoded_payload(part)
    if payload is not None:
        return len(payload)
    try:  # an attached message/rfc822: its size as sent
        return len(part.as_bytes()) if part.is_multipart() else 0
    except Exception:
        return 0


def _structure(raw: bytes, defects: list[str]) -> Message:
    """The parsed message; its headers alone, with the body as text, if MIME is too deep."""
    policy = _POLICY if raw.count(b"\n--") <= _MAX_BOUNDARY_LINES else email.policy.compat32
    if len(_BOUNDARY_PARAM.findall(raw, 0, len(raw))) <= _MAX_BOUNDARIES:
        try:
            return email.message_from_bytes(raw, _class=EmailMessage, policy=policy)
        except RecursionError:
            pass
    defects.append("MIME nesting too deep: body read as plain text")
    msg = BytesHeaderParser(_class=EmailMessage, policy=email.policy.compat32).parsebytes(raw)
    del msg["Content-Type"], msg["Content-Transfer-Encoding"]
    return msg


def _content(msg: Message, defects: list[str]) -> tuple[str, tuple[Attachment, ...]]:
    try:
        body_part = _body_part(msg)
        return _body(body_part), _attachments(msg, body_part)
    except RecursionError:
        defects.append("MIME nesting too deep: no body or attachments read")
        return "", ()


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse raw message bytes; never raises for any input."""
    defects: list[str] = []
    msg = _structure(raw, defects)
    defects += [type(defect).__name__ for defect in getattr(msg, "defects", [])]
    from_addresses = _addresses(msg, "from", defects)
    subject_raw = _raw_header_bytes(msg, "subject")
    message_id, derived = _message_id(msg, raw)
    body, attachments = _content(msg, defects)
    return ParsedMessage(
        message_id=message_id,
        message_id_derived=derived,
        subject=decode_header_text(subject_raw) if subject_raw is not None else "",
        from_address=from_addresses[0] if from_addresses else None,
        to=_addresses(msg, "to", defects),
        cc=_addresses(msg, "cc", defects),
        sent_at=_sent_at(msg),
        body=body,
        attachments=attachments,
        defects=tuple(defects),
    )
