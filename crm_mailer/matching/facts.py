"""What matching may know about one tenant, loaded up front so every step stays pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from crm_mailer.mail.addresses import address_domain
from crm_mailer.mail.parse import ParsedMessage
from crm_mailer.mail.proof import SenderPolicy, Verdict, registrable_domain


class Direction(StrEnum):
    """Whether the tenant's people wrote the mail (outbound) or a customer did (inbound)."""

    OUTBOUND = "outbound"
    INBOUND = "inbound"


class RecordKind(StrEnum):
    LEAD = "lead"
    PROJECT = "project"


@dataclass(frozen=True, slots=True)
class CompanyRef:
    id: int
    key: str


@dataclass(frozen=True, slots=True)
class ContactRef:
    id: int
    email: str
    company_id: int | None


@dataclass(frozen=True, slots=True)
class RecordRef:
    """A lead or project a subject number points to."""

    kind: RecordKind
    id: int
    number: int
    company_id: int | None


@dataclass(frozen=True, slots=True)
class TenantFacts:
    """The slice of one tenant's directory that a message can touch; nothing of other tenants."""

    tenant_id: int
    slug: str
    hosts: frozenset[str]
    sender_domains: frozenset[str]
    sender_policy: SenderPolicy = SenderPolicy.ALIGNED
    contacts: Mapping[str, ContactRef] = field(default_factory=dict)
    company_domains: Mapping[str, CompanyRef] = field(default_factory=dict)
    companies: Mapping[int, CompanyRef] = field(default_factory=dict)
    leads: Mapping[int, RecordRef] = field(default_factory=dict)
    projects: Mapping[int, RecordRef] = field(default_factory=dict)

    def is_sender_domain(self, domain: str) -> bool:
        """True for the tenant's people's mail domains and hosts under them
        (`vertrieb.xyz.de` is xyz.de's)."""
        return domain in self.sender_domains or registrable_domain(domain) in self.sender_domains

    def is_own_domain(self, domain: str) -> bool:
        """True for the tenant's crm hosts and its people's mail domains."""
        return domain in self.hosts or self.is_sender_domain(domain)

    def company_for_domain(self, domain: str) -> tuple[CompanyRef, str] | None:
        """The company that registered this domain, and the domain it registered: the
        domain itself, else its registrable domain on the Public Suffix List
        (`max@vertrieb.acme.com` is acme.com's; `notacme.com` is not)."""
        for candidate in (domain, registrable_domain(domain)):
            if candidate and candidate in self.company_domains:
                return self.company_domains[candidate], candidate
        return None


# A stored message passed its sender check when it was received; matching it again
# (rematch) re-decides where it belongs, not whether it was allowed in.
PROVEN_AT_RECEIPT: Mapping[SenderPolicy, Verdict] = {
    policy: Verdict(True, "proven when the message was received") for policy in SenderPolicy}


@dataclass(frozen=True, slots=True)
class MatchInput:
    """The message and envelope as matching sees them."""

    message: ParsedMessage
    envelope_sender: str | None
    numbers: tuple[int, ...]
    # Whether the From is proven, per sender policy (computed at the edge: DKIM needs DNS).
    verdicts: Mapping[SenderPolicy, Verdict] = field(default_factory=dict)

    @property
    def sender(self) -> str | None:
        """The header From, else the envelope sender (both normalized).

        Without a From, the envelope sender can only pass the policy 'header'.
        """
        return self.message.from_address or self.envelope_sender


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one step found and why, for the log, the queue and the stored message."""

    step: str
    found: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "found": self.found, **self.detail}


@dataclass(frozen=True, slots=True)
class Findings:
    """What the steps found so far; each step returns a new one with its evidence added."""

    direction: Direction | None = None
    contacts: tuple[ContactRef, ...] = ()
    company: CompanyRef | None = None
    records: tuple[RecordRef, ...] = ()
    evidence: tuple[Evidence, ...] = ()


def counterpart_addresses(match: MatchInput, facts: TenantFacts, direction: Direction) -> list[str]:
    """The addresses that can be the customer side, in the order they count."""
    if direction is Direction.INBOUND:
        return [match.sender] if match.sender else []
    message = match.message
    return [a for a in (*message.to, *message.cc)
            if not facts.is_own_domain(address_domain(a))]
