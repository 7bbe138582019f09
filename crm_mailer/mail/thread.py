"""Message-IDs: how one is keyed for storage, and which stored ones a reply refers to.

Both live here so that a reference is keyed by the very function that keyed its parent:
a reply finds the parent's `inbound_messages.message_id` byte for byte, whatever odd bytes
either ID holds.
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Iterator

from crm_mailer.mail.header_block import HeaderBlock, unfold

MAX_REFERENCES = 32  # of References, the nearest ancestors; older ones are not read
ESCAPED_ID_DOMAIN = "escaped.crm-mailer.invalid"
LONG_ID_DOMAIN = "long-id.crm-mailer.invalid"
_RESERVED_SUFFIX = ".crm-mailer.invalid"
_MAX_MESSAGE_ID = 255
_ANGLE_ID_BYTES = re.compile(rb"<([^<>]+)>")
# One piece of an In-Reply-To or References value, left to right: an ID in angle brackets,
# a comment (skipped), or a run of other characters (an ID without brackets, or junk).
# Possessive, and no alternative can start inside another's match: linear in the length.
_PIECE = re.compile(rb"<([^<>]*+)>|\([^()<>]*+\)|([^\s<>(),]++)")
_BLANKS = re.compile(rb"[ \t]+")


def message_id_key(value: bytes) -> str:
    """The Message-ID as stored: exact, so two IDs that differ in any byte stay two.

    The ID is what stands between the angle brackets (else the whole trimmed value).
    Valid UTF-8 (RFC 6532) without control characters is kept as it is; anything else
    is percent-escaped byte by byte under a reserved domain, as is an ID that already
    ends in a reserved domain, so no two inputs share a key. Longer than 255
    characters: a SHA-256 of the bytes.
    """
    match = _ANGLE_ID_BYTES.search(value)
    exact = match.group(1) if match else value.strip(b" \t<>")
    try:
        text = exact.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if not text or not text.isprintable() or text.endswith(_RESERVED_SUFFIX):
        text = f"{_escape(exact)}@{ESCAPED_ID_DOMAIN}"
    if len(text) > _MAX_MESSAGE_ID:
        return f"{hashlib.sha256(exact).hexdigest()}@{LONG_ID_DOMAIN}"
    return text


def _escape(data: bytes) -> str:
    return "".join(chr(byte) if 0x21 <= byte <= 0x7E and byte != 0x25 else f"%{byte:02X}"
                   for byte in data)


def thread_references(block: HeaderBlock) -> tuple[str, ...]:
    """The keys of the messages this one replies to, nearest first, each once.

    In-Reply-To first, then References from its end (the parent, then older ancestors),
    at most its last MAX_REFERENCES IDs. Each reference is keyed as message_id_key keys
    a Message-ID field holding just that ID, so it equals the parent's stored key.
    """
    keys: dict[str, None] = {}
    for ids in (_ids(block.first("in-reply-to"), first=True),
                _ids(block.first("references"), first=False)):
        for raw_id in ids:
            for key in _keys(raw_id):
                keys.setdefault(key)
    return tuple(keys)


def _ids(value: bytes | None, *, first: bool) -> Iterator[bytes]:
    """The IDs of one field, each as a Message-ID field would hold it alone.

    `first`: the first MAX_REFERENCES in order (In-Reply-To names the parent first);
    else the last MAX_REFERENCES, nearest (last written) first (References).
    """
    if value is None:
        return iter(())
    found: deque[bytes] = deque(maxlen=None if first else MAX_REFERENCES)
    # unfold, as for the parent's Message-ID: folds go, a bare CR or LF is a space.
    for piece in _PIECE.finditer(unfold(value)):
        bracketed, bare = piece.group(1), piece.group(2)
        if bracketed is not None and bracketed.strip(b" \t"):
            found.append(b"<" + bracketed + b">")
        elif bare is not None and b"@" in bare:
            # Without brackets only what looks like id-left "@" id-right counts: the
            # words of "Your message of ..." are not IDs. An ID without brackets
            # cannot hold a blank, so blanks end it (`abc@x.de def@y.de` is two).
            found.append(bare)
        if first and len(found) == MAX_REFERENCES:
            break
    return iter(found) if first else reversed(found)


def _keys(raw_id: bytes) -> Iterator[str]:
    """The stored key of the ID, then, when a fold or line break put blanks inside its
    brackets (RFC 5322 allows none there), the key of the ID without them."""
    yield message_id_key(raw_id)
    if raw_id.startswith(b"<") and _BLANKS.search(raw_id):
        joined = _BLANKS.sub(b"", raw_id)
        if joined != b"<>":
            yield message_id_key(joined)
