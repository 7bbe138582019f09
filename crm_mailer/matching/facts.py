"""What matching may know about one tenant, loaded up front so every step stays pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from crm_mailer.mail.addresses import address_domain
from crm_mailer.mail.machine import MachineMail
from crm_mailer.mail.parse import ParsedMessage
from crm_mailer.mail.proof import SenderPolicy, Verdict, registrable_domain
from crm_mailer.matching.subject import words


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
    """A lead or project a subject number, a thread or a name points to."""

    kind: RecordKind
    id: int
    number: int
    company_id: int | None
    name: str = field(default="", compare=False)

    @property
    def name_words(self) -> tuple[str, ...]:
        return words(self.name, limit=1_000)


class ThreadState(StrEnum):
    FILED = "filed"      # in the contact history (also when a person confirmed it)
    WAITING = "waiting"  # in the confirmation queue


@dataclass(frozen=True, slots=True)
class ThreadRef:
    """A message of this tenant that a new one replies to, and where it went."""

    message_id: str
    state: ThreadState
    record: RecordRef | None = None
    company_id: int | None = None
    candidates: Mapping[str, list[int | str]] = field(default_factory=dict)


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
    # The referenced messages of this tenant that were filed or wait, by Message-ID key.
    threads: Mapping[str, ThreadRef] = field(default_factory=dict)
    # Open leads and active projects whose whole name is a run of subject words.
    named: tuple[RecordRef, ...] = ()
    # The open leads and active projects of each company the message can belong to.
    company_records: Mapping[int, tuple[RecordRef, ...]] = field(default_factory=dict)

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
    # The addresses that can be the customer side, in the order they count (contact step).
    counterparts: tuple[str, ...] = ()
    contacts: tuple[ContactRef, ...] = ()
    # Set by the machine step when a machine wrote the mail: it is decided then and there.
    machine: MachineMail | None = None
    company: CompanyRef | None = None
    records: tuple[RecordRef, ...] = ()
    # Which step found the records: "number", "thread" or "name".
    source: str = ""
    # The referenced message that still waits in the queue: this one waits with it.
    waiting: ThreadRef | None = None
    # Suggested to the person (never certain): the company's single open lead.
    suggested: tuple[RecordRef, ...] = ()
    evidence: tuple[Evidence, ...] = ()

    def noted(self, step: str, found: str, detail: Mapping[str, Any], **changes: Any) -> Findings:
        """These findings with `changes` applied and the step's evidence added."""
        return replace(self, **changes, evidence=(*self.evidence, Evidence(step, found, detail)))


def forwarded_counterparts(match: MatchInput, facts: TenantFacts) -> tuple[list[str], str] | None:
    """For a forward to crm@ alone (nothing in To or Cc but crm@ and the tenant's own
    people), the customer side of the forwarded original - its sender, or, when one of the
    tenant's people wrote it, its recipients - and where the original was read from.
    None when the rule does not apply."""
    message, original = match.message, match.message.forwarded
    if original is None or any(not facts.is_own_domain(address_domain(a))
                               for a in (*message.to, *message.cc)):
        return None
    if original.from_address and not facts.is_own_domain(address_domain(original.from_address)):
        return [original.from_address], original.source
    return ([a for a in (*original.to, *original.cc) if not facts.is_own_domain(address_domain(a))],
            original.source)
