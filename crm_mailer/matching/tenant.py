"""Tenant by the envelope recipient: only `<local part>@<registered host>` is ever accepted."""

from __future__ import annotations

from crm_mailer.mail.addresses import normalize_domain, split_address

NAME = "tenant"
DESCRIPTION = "the tenant whose registered host the envelope recipient names"


def recipient_host(address: str, local_part: str) -> str | None:
    """The normalized host of `local_part@host` (case-insensitive), else None.

    Domain literals (`crm@[192.0.2.1]`) never name a tenant, nor do source routes: their
    local part (`@relay.example:crm`) is not `local_part`.
    """
    parts = split_address(address)
    if parts is None:
        return None
    local, domain = parts
    if local.lower() != local_part.lower() or domain.startswith("["):
        return None
    host = normalize_domain(domain)
    return host or None
