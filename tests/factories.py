"""Test data: the README's import example, with overrides, and mail built like real clients do."""

from __future__ import annotations

import copy
import datetime as dt
import json
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

EXAMPLE: dict[str, Any] = {"tenants": [{
    "slug": "xyz", "name": "XYZ GmbH",
    "hosts": ["xyz.hq.example"], "sender_domains": ["xyz.de"],
    "lead_statuses": [{"name": "Erstkontakt", "kind": "open"},
                      {"name": "Gewonnen", "kind": "won"},
                      {"name": "Verloren", "kind": "lost"}],
    "sales_actions": ["Messe 2026"],
    "companies": [{"key": "acme", "name": "ACME AG", "domains": ["acme.com"]}],
    "contacts": [{"email": "bob@acme.com", "name": "Bob Bauer", "company": "acme"}],
    "leads": [{"number": 11111, "name": "Website-Relaunch", "company": "acme",
               "contact": "bob@acme.com", "status": "Erstkontakt", "sales_action": "Messe 2026",
               "planned_revenues": [{"month": "2026-12", "amount": "12000.00"}]}],
    "projects": [{"number": 20001, "name": "Support 2026", "company": "acme"}],
}]}


def directory(**tenant_overrides: Any) -> dict[str, Any]:
    """The example directory; keyword arguments replace keys of its one tenant."""
    document = copy.deepcopy(EXAMPLE)
    document["tenants"][0].update(tenant_overrides)
    return document


def second_tenant() -> dict[str, Any]:
    """Another tenant, whose numbers and addresses overlap the first one's on purpose."""
    return {
        "slug": "other", "name": "Other KG",
        "hosts": ["crm.other.example"], "sender_domains": ["other.example"],
        "lead_statuses": [{"name": "Neu", "kind": "open"}],
        "companies": [{"key": "acme", "name": "ACME (other's)", "domains": ["acme.com"]}],
        "contacts": [{"email": "bob@acme.com", "name": "Bob", "company": "acme"}],
        "leads": [{"number": 11111, "name": "Other's lead", "company": "acme",
                   "contact": "bob@acme.com"}],
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document)


def mail(*, sender: str = "Alice Adler <alice@xyz.de>", to: str | None = "bob@acme.com",
         cc: str | None = None, subject: str = "XYZ Lead 11111", body: str = "Hallo Bob,\n",
         message_id: str | None = "auto", html: str | None = None,
         date: dt.datetime | None = None, headers: dict[str, str] | None = None) -> bytes:
    """A message as a mail client writes it (CRLF line ends)."""
    message = EmailMessage()
    message["From"] = sender
    if to:
        message["To"] = to
    if cc:
        message["Cc"] = cc
    message["Subject"] = subject
    message["Date"] = format_datetime(date or dt.datetime(2026, 11, 20, 9, 30,
                                                          tzinfo=dt.timezone(dt.timedelta(hours=1))))
    if message_id == "auto":
        message["Message-ID"] = make_msgid(domain="xyz.de")
    elif message_id is not None:
        message["Message-ID"] = message_id
    for name, value in (headers or {}).items():  # In-Reply-To, References, Auto-Submitted
        message[name] = value
    if html is not None and body:
        message.set_content(body)
        message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    else:
        message.set_content(body)
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
