"""Normal forms for domains and mail addresses, so that lookups compare like with like."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

import idna

MAX_ADDRESS_LENGTH = 254  # RFC 5321's path limit less the angle brackets
# A label IDNA leaves as it is, lower-cased: letters, digits, inner hyphens, at most 63,
# and no hyphens in places 3 and 4 (`xn--` labels are decoded and checked by the library).
_PLAIN_LABEL = re.compile(r"(?!..--)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)


def _encode(domain: str) -> str:
    """The IDNA (UTS #46) form of a domain without its trailing dot; raises what idna raises.

    Most domains are plain ASCII host names, already in that form once lower-cased: they
    skip the library, which takes 70 us a domain (a 500,000-lead import checks 100,000).
    """
    lowered = domain.lower()
    if domain.isascii() and len(lowered) <= 253 \
            and all(map(_PLAIN_LABEL.fullmatch, lowered.split("."))):
        return lowered
    return idna.encode(domain, uts46=True).decode("ascii")


# The same domains come again and again (the mail of one company, its contacts). Only
# what can be a domain is kept: a stranger's megabyte of "domain" is not.
_encode_cached = functools.lru_cache(maxsize=16_384)(_encode)


def _idna(domain: str) -> str:
    return _encode_cached(domain) if len(domain) <= 255 else _encode(domain)


def normalize_domain(domain: str) -> str:
    """Return the domain in lower-case IDNA (ASCII) form; `Büro.Example.` -> `xn--bro-hoa.example`.

    A domain that is not valid IDNA is only lower-cased: it can never equal a registered
    host, which was validated on import, so it simply matches nothing.
    """
    domain = domain.strip().rstrip(".")
    if not domain:
        return ""
    try:
        return _idna(domain)
    except (idna.IDNAError, UnicodeError, ValueError):
        return domain.lower()


def strict_domain(domain: str) -> str:
    """Like normalize_domain, but raise ValueError for a domain that is not valid IDNA."""
    domain = domain.strip().rstrip(".")
    if not domain or "@" in domain:
        raise ValueError(f"{domain!r} is not a domain name")
    try:
        return _idna(domain)
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(f"{domain!r} is not a valid domain name: {exc}") from None


def split_address(address: str) -> tuple[str, str] | None:
    """Split `local@domain` at the last `@`; None when either side is empty."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        return None
    return local, domain


def normalize_address(address: str) -> str | None:
    """Return `local@domain` lower-cased with the domain in IDNA form, or None if not an address.

    Local parts are compared case-insensitively, as the product promises (strictly
    they are case-sensitive, but no mail system in use treats them so).
    """
    parts = split_address(address)
    if parts is None or len(address) > MAX_ADDRESS_LENGTH or not address.isprintable():
        return None  # too long for any mail system, or control characters: not an address
    local, domain = parts
    if local.startswith('"') and local.endswith('"') and len(local) > 1:
        local = local[1:-1]
    normalized = f"{local.lower()}@{normalize_domain(domain)}"
    # Lower-casing can lengthen (`İ` becomes two characters): check the result too.
    return normalized if len(normalized) <= MAX_ADDRESS_LENGTH else None


def address_domain(address: str) -> str:
    """The domain part of an already normalized address."""
    return address.rpartition("@")[2]


def split_address_list(value: str) -> list[str]:
    """Split an address header at its top-level commas, in one pass, comments dropped.

    The standard library's parsers are quadratic in the header's length (60 KB of commas
    took 9 s) and recurse on nested comments; this split is linear and keeps quoted
    strings and angle brackets whole, so each element is small and parsed on its own.
    """
    elements: list[str] = []
    current: list[str] = []
    depth = 0  # comment nesting
    quoted = angle = escaped = False
    for char in value:
        if escaped:
            escaped = False
            if not depth:
                current.append(char)
            continue
        if char == "\\" and (quoted or depth):
            escaped = True
            if not depth:
                current.append(char)
            continue
        if depth:
            depth += {"(": 1, ")": -1}.get(char, 0)
            continue
        if quoted:
            quoted = char != '"'
        elif char == '"':
            quoted = True
        elif char == "(":
            depth = 1
            current.append(" ")
            continue
        elif char == "<":
            angle = True
        elif char == ">":
            angle = False
        elif char in ",;" and not angle:
            elements.append("".join(current))
            current = []
            continue
        current.append(char)
    elements.append("".join(current))
    return [element.strip() for element in elements if element.strip()]


def element_addresses(element: str) -> list[str]:
    """The addr-spec of one list element: `Name <a@b>`, `a@b`, or `Group: a@b`.

    Two bare addresses with only a space between (`a@x b@y`) are two, not one glued.
    """
    open_at = element.rfind("<")
    if open_at >= 0 and _outside_quotes(element, open_at):
        spec = element[open_at + 1:].partition(">")[0]
        return [spec.rpartition(":")[2].strip()]  # drop an obsolete source route
    colon = _top_level_colon(element)
    if colon >= 0:  # the display name of a group: `undisclosed-recipients: a@b`
        element = element[colon + 1:]
    tokens = _unquoted_words(element.strip())
    if sum("@" in token for token in tokens) > 1:
        return [token for token in tokens if "@" in token]
    return ["".join(tokens)]  # `alice @ xyz.de`: space around the parts is allowed


def _with_quoting(text: str) -> Iterator[tuple[int, str, bool]]:
    """Each character with its index and whether it is inside a quoted string."""
    quoted = escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = quoted
        elif char == '"':
            quoted = not quoted
        yield index, char, quoted


def _outside_quotes(text: str, index: int) -> bool:
    return not any(quoted for at, _, quoted in _with_quoting(text[:index + 1]) if at == index)


def _top_level_colon(text: str) -> int:
    return next((index for index, char, quoted in _with_quoting(text)
                 if char == ":" and not quoted), -1)


def _unquoted_words(text: str) -> list[str]:
    words: list[str] = []
    current: list[str] = []
    for _, char, quoted in _with_quoting(text):
        if quoted or not char.isspace():
            current.append(char)
        elif current:
            words.append("".join(current))
            current = []
    if current:
        words.append("".join(current))
    return words
