"""Normal forms for domains and mail addresses, so that lookups compare like with like."""

from __future__ import annotations

import idna

MAX_ADDRESS_LENGTH = 254  # RFC 5321's path limit less the angle brackets


def normalize_domain(domain: str) -> str:
    """Return the domain in lower-case IDNA (ASCII) form; `Büro.Example.` -> `xn--bro-hoa.example`.

    A domain that is not valid IDNA is only lower-cased: it can never equal a registered
    host, which was validated on import, so it simply matches nothing.
    """
    domain = domain.strip().rstrip(".")
    if not domain:
        return ""
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return domain.lower()


def strict_domain(domain: str) -> str:
    """Like normalize_domain, but raise ValueError for a domain that is not valid IDNA."""
    domain = domain.strip().rstrip(".")
    if not domain or "@" in domain:
        raise ValueError(f"{domain!r} is not a domain name")
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
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
    return f"{local.lower()}@{normalize_domain(domain)}"


def address_domain(address: str) -> str:
    """The domain part of an already normalized address."""
    return address.rpartition("@")[2]
