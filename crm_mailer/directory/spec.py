"""The import file, read and validated into plain typed records (no I/O).

Every error names the tenant and the record, so an operator can fix the file. Every object
accepts only its known keys: a misspelt key (`stauts`) is an error naming its place, not a
value silently left out.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from crm_mailer.db.models import ReviewPolicy, StatusKind
from crm_mailer.errors import DirectoryImportError, InvalidRequest
from crm_mailer.leads.values import parse_amount, parse_month
from crm_mailer.mail.addresses import normalize_address, strict_domain
from crm_mailer.mail.freemail import FREE_MAIL, is_free_mail
from crm_mailer.mail.proof import SenderPolicy

_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_NUMBER = 2**63 - 1
T = TypeVar("T")

# The keys each object of the file may have, in the order the README lists them.
FILE_KEYS = ("tenants",)
TENANT_KEYS = ("slug", "name", "hosts", "sender_domains", "review", "sender_policy",
               "lead_statuses", "sales_actions", "companies", "contacts", "leads", "projects")
STATUS_KEYS = ("name", "kind")
COMPANY_KEYS = ("key", "name", "domains")
CONTACT_KEYS = ("email", "name", "company")
LEAD_KEYS = ("number", "name", "company", "contact", "status", "sales_action",
             "planned_revenues")
REVENUE_KEYS = ("month", "amount")
PROJECT_KEYS = ("number", "name", "company", "contact")


@dataclass(frozen=True, slots=True)
class StatusSpec:
    name: str
    kind: StatusKind


@dataclass(frozen=True, slots=True)
class CompanySpec:
    key: str
    name: str
    domains: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ContactSpec:
    email: str
    name: str
    company: str | None


@dataclass(frozen=True, slots=True)
class RevenueSpec:
    month: dt.date
    amount: Decimal


@dataclass(frozen=True, slots=True)
class LeadSpec:
    number: int
    name: str
    company: str | None
    contact: str | None
    status: str | None
    sales_action: str | None
    planned_revenues: tuple[RevenueSpec, ...]


@dataclass(frozen=True, slots=True)
class ProjectSpec:
    number: int
    name: str
    company: str | None
    contact: str | None


@dataclass(frozen=True, slots=True)
class TenantSpec:
    slug: str
    name: str
    hosts: tuple[str, ...]
    sender_domains: tuple[str, ...]
    lead_statuses: tuple[StatusSpec, ...]
    sales_actions: tuple[str, ...]
    companies: tuple[CompanySpec, ...]
    contacts: tuple[ContactSpec, ...]
    leads: tuple[LeadSpec, ...]
    projects: tuple[ProjectSpec, ...]
    review: ReviewPolicy | None = None  # None: leave as is (new tenants: "uncertain")
    sender_policy: SenderPolicy | None = None  # None: leave as is (new tenants: "aligned")


class _Object(dict[str, Any]):
    """A JSON object that remembers a key given twice (json keeps the last one silently)."""

    duplicate: str | None = None


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    found = _Object()
    for key, value in pairs:
        if key in found and found.duplicate is None:
            found.duplicate = key
        found[key] = value
    return found


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class _Reader:
    """Typed access to one JSON object, raising errors that say where in the file."""

    def __init__(self, where: str, data: Any, keys: tuple[str, ...]) -> None:
        if not isinstance(data, dict):
            raise DirectoryImportError(f"{where}: expected an object")
        self.where, self.data, self.keys = where, data, keys

    def fail(self, message: str) -> DirectoryImportError:
        return DirectoryImportError(f"{self.where}: {message}")

    def check_keys(self) -> None:
        """Refuse a key this object does not have, and a key given twice."""
        for key in self.data:
            if key not in self.keys:
                raise self.fail(f"key {key!r} is unknown (known: {', '.join(self.keys)})")
        if isinstance(self.data, _Object) and self.data.duplicate is not None:
            raise self.fail(f"key {self.data.duplicate!r} appears twice")

    def identify(self, read: Callable[[_Reader], T], where: Callable[[T], str]) -> T:
        """Read the key that names the record, then say where by its name, not its index.

        When that key is missing, a misspelt one explains it better than "must be ..."."""
        try:
            value = read(self)
        except DirectoryImportError:
            self.check_keys()
            raise
        self.where = where(value)
        self.check_keys()
        return value

    def text(self, key: str, *, required: bool = True, default: str = "") -> str:
        value = self.data.get(key)
        if value is None and not required:
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"'{key}' must be a non-empty string")
        if "\x00" in value:
            raise self.fail(f"'{key}' must not contain NUL characters")
        return value.strip()

    def optional(self, key: str) -> str | None:
        return self.text(key, required=False) or None if key in self.data else None

    def items(self, key: str) -> list[Any]:
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise self.fail(f"'{key}' must be a list")
        return value

    def number(self, key: str) -> int:
        value = self.data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_NUMBER:
            raise self.fail(f"'{key}' must be a positive whole number")
        return value


def _unique(where: str, kind: str, values: list[Any]) -> None:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise DirectoryImportError(f"{where}: {kind} {value!r} appears twice")
        seen.add(value)


def _domain(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise DirectoryImportError(f"{where}: domain {value!r} must be a string")
    try:
        return strict_domain(value)
    except ValueError as exc:
        raise DirectoryImportError(f"{where}: {exc}") from None


def _email(where: str, value: str) -> str:
    email = normalize_address(value)
    if email is None:
        raise DirectoryImportError(f"{where}: {value!r} is not a mail address")
    local, _, domain = email.rpartition("@")
    return f"{local}@{_domain(where, domain)}"


def _revenue(where: str, data: Any) -> RevenueSpec:
    reader = _Reader(where, data, REVENUE_KEYS)
    reader.check_keys()
    # The library's own rules (leads.values), so an import never stores what it refuses.
    try:
        month = parse_month(reader.text("month"))
        amount = parse_amount(data.get("amount"))
    except InvalidRequest as exc:
        raise reader.fail(str(exc)) from None
    if amount == 0:  # the library removes a month set to 0; a list simply leaves it out
        raise reader.fail("amount must be more than 0 (leave the month out instead)")
    return RevenueSpec(month, amount)


def _not_free_mail(where: str, domain: str, free_mail: frozenset[str], what: str) -> str:
    if is_free_mail(domain, free_mail):
        raise DirectoryImportError(
            f"{where}: '{domain}' is a free-mail domain: it cannot identify {what} (its "
            "users are people, not one company); add such people as contacts instead")
    return domain


def _tenant(index: int, data: Any, free_mail: frozenset[str] = FREE_MAIL) -> TenantSpec:
    reader = _Reader(f"tenants[{index}]", data, TENANT_KEYS)
    slug = reader.identify(lambda r: r.text("slug"), lambda slug: f"tenant '{slug}'")
    if not _SLUG.fullmatch(slug):
        raise reader.fail(f"slug {slug!r} must be lower-case letters, digits, '-' or '_'")
    where = reader.where
    hosts = [_domain(f"{where}, host {h!r}", h) for h in reader.items("hosts")]
    _unique(where, "host", hosts)
    sender_domains = [_not_free_mail(f"{where}, sender domain {d!r}",
                                     _domain(f"{where}, sender domain {d!r}", d), free_mail,
                                     "the tenant's own people")
                      for d in reader.items("sender_domains")]
    _unique(where, "sender domain", sender_domains)

    statuses = []
    for i, item in enumerate(reader.items("lead_statuses")):
        status = _Reader(f"{where}, lead_statuses[{i}]", item, STATUS_KEYS)
        name = status.identify(lambda s: s.text("name"),
                               lambda name: f"{where}, lead status '{name}'")
        kind = status.text("kind")
        try:
            statuses.append(StatusSpec(name, StatusKind(kind)))
        except ValueError:
            raise status.fail(f"kind must be open, won or lost, not {kind!r}") from None
    _unique(where, "lead status", [s.name for s in statuses])

    actions = []
    for item in reader.items("sales_actions"):
        if not isinstance(item, str) or not item.strip():
            raise reader.fail(f"sales action {item!r} must be a non-empty string")
        actions.append(item.strip())
    _unique(where, "sales action", actions)

    companies = []
    for i, item in enumerate(reader.items("companies")):
        company = _Reader(f"{where}, companies[{i}]", item, COMPANY_KEYS)
        key = company.identify(lambda c: c.text("key"),
                               lambda key: f"{where}, company '{key}'")
        domains = tuple(_not_free_mail(company.where, _domain(company.where, d), free_mail,
                                       "a company") for d in company.items("domains"))
        companies.append(CompanySpec(key, company.text("name", required=False, default=key),
                                     domains))
    _unique(where, "company", [c.key for c in companies])
    _unique(where, "company domain", [d for c in companies for d in c.domains])

    contacts = []
    for i, item in enumerate(reader.items("contacts")):
        contact = _Reader(f"{where}, contacts[{i}]", item, CONTACT_KEYS)
        raw_email = contact.identify(lambda c: c.text("email"),
                                     lambda email: f"{where}, contact '{email}'")
        contacts.append(ContactSpec(_email(contact.where, raw_email),
                                    contact.text("name", required=False),
                                    contact.optional("company")))
    _unique(where, "contact", [c.email for c in contacts])

    leads = []
    for i, item in enumerate(reader.items("leads")):
        lead = _Reader(f"{where}, leads[{i}]", item, LEAD_KEYS)
        number = lead.identify(lambda r: r.number("number"),
                               lambda number: f"{where}, lead {number}")
        contact_email = lead.optional("contact")
        revenues = tuple(_revenue(f"{lead.where}, planned_revenues[{j}]", r)
                         for j, r in enumerate(lead.items("planned_revenues")))
        _unique(lead.where, "planned revenue month",
                [r.month.strftime("%Y-%m") for r in revenues])
        leads.append(LeadSpec(
            number, lead.text("name"), lead.optional("company"),
            _email(lead.where, contact_email) if contact_email else None,
            lead.optional("status"), lead.optional("sales_action"), revenues))
    _unique(where, "lead number", [lead.number for lead in leads])

    projects = []
    for i, item in enumerate(reader.items("projects")):
        project = _Reader(f"{where}, projects[{i}]", item, PROJECT_KEYS)
        number = project.identify(lambda r: r.number("number"),
                                  lambda number: f"{where}, project {number}")
        contact_email = project.optional("contact")
        projects.append(ProjectSpec(
            number, project.text("name"), project.optional("company"),
            _email(project.where, contact_email) if contact_email else None))
    _unique(where, "project number", [p.number for p in projects])

    review = reader.optional("review")
    if review is not None and review not in {p.value for p in ReviewPolicy}:
        raise reader.fail(f"review must be 'uncertain' or 'all', not {review!r}")
    sender_policy = reader.optional("sender_policy")
    if sender_policy is not None and sender_policy not in {p.value for p in SenderPolicy}:
        raise reader.fail("sender_policy must be 'aligned', 'dkim' or 'header', "
                          f"not {sender_policy!r}")
    return TenantSpec(slug, reader.text("name", required=False, default=slug), tuple(hosts),
                      tuple(sender_domains), tuple(statuses), tuple(actions), tuple(companies),
                      tuple(contacts), tuple(leads), tuple(projects),
                      ReviewPolicy(review) if review else None,
                      SenderPolicy(sender_policy) if sender_policy else None)


def parse_directory(text: str | bytes, *,
                    free_mail: frozenset[str] = FREE_MAIL) -> tuple[TenantSpec, ...]:
    """Read an import document; `free_mail`: the domains refused as company or sender
    domains (see crm_mailer.mail.freemail).

    A JSON number is read exactly as written (as Decimal, never float), so an amount may
    be `"12000.50"` or `12000.50`; both pass the library's rules for amounts.
    """
    try:
        document = json.loads(text, parse_float=Decimal, parse_constant=_no_constant,
                              object_pairs_hook=_object)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a 5,000-digit number
        reason = "a number has too many digits" if "digits" in str(exc) else str(exc)
        raise DirectoryImportError(f"the file is not valid JSON: {reason}") from None
    except RecursionError:
        raise DirectoryImportError("the file is not valid JSON: nested too deeply") from None
    root = _Reader("the file", document, FILE_KEYS)
    root.check_keys()
    tenants = tuple(_tenant(i, t, free_mail) for i, t in enumerate(root.items("tenants")))
    _unique("the file", "tenant", [t.slug for t in tenants])
    _unique("the file", "host", [h for t in tenants for h in t.hosts])
    return tenants
