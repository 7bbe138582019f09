"""Where a person puts a mail: company, contact and lead or project, validated as one choice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crm_mailer.db.models import Company, Contact, Lead, Project
from crm_mailer.errors import InvalidRequest, NotFound
from crm_mailer.leads.scope import Lookup


@dataclass(frozen=True, slots=True)
class Placement:
    """A validated choice: the contact and the lead or project belong to the company."""

    company: Company
    contact: Contact | None
    lead: Lead | None
    project: Project | None

    def as_json(self) -> dict[str, Any]:
        return {"company": self.company.key,
                "contact": self.contact.email if self.contact else None,
                "lead": self.lead.number if self.lead else None,
                "project": self.project.number if self.project else None}


async def place(lookup: Lookup, *, company: str | None, contact: str | None,
                lead: int | None, project: int | None,
                suggested_contacts: list[str] | None = None,
                suggested_companies: list[str] | None = None) -> Placement:
    """Resolve and validate a choice; what is not given comes from the record, the contact
    or the suggestions, in that order. Raises InvalidRequest or NotFound, naming the part."""
    if lead is not None and project is not None:
        raise InvalidRequest("choose a lead or a project, not both")
    # Share locks: no company change of the contact, lead or project until the entry is
    # filed, so what is checked here is what is filed. Contacts first, then the record: the
    # order every writer takes its locks in.
    contact_row = await lookup.contact(contact, "share") if contact else None
    suggestions = [] if contact_row is not None else \
        await _contacts(lookup, suggested_contacts or [])
    lead_row = await lookup.lead(lead, "share") if lead is not None else None
    project_row = await lookup.project(project, "share") if project is not None else None
    record = lead_row or project_row

    if company is not None:
        company_row = await lookup.company(company)
    elif record is not None and record.company_id is not None:
        company_row = await lookup.session.get_one(Company, record.company_id)
    elif contact_row is not None and contact_row.company_id is not None:
        company_row = await lookup.session.get_one(Company, contact_row.company_id)
    elif suggested_companies and len(suggested_companies) == 1:
        company_row = await lookup.company(suggested_companies[0])
    else:
        raise InvalidRequest("which company? name one (candidates: "
                             f"{', '.join(suggested_companies or []) or 'none'})")

    if record is not None and record.company_id != company_row.id:
        what = f"lead {lead}" if lead_row is not None else f"project {project}"
        raise InvalidRequest(f"{what} does not belong to company '{company_row.key}'")
    if contact_row is None:
        contact_row = next((c for c in suggestions if c.company_id == company_row.id), None)
    elif contact_row.company_id != company_row.id:
        raise InvalidRequest(f"contact '{contact_row.email}' does not belong to company "
                             f"'{company_row.key}'")
    return Placement(company_row, contact_row, lead_row, project_row)


async def _contacts(lookup: Lookup, emails: list[str]) -> list[Contact]:
    """The suggested contacts still in the directory, share-locked, in the given order."""
    found = []
    for email in emails:
        try:
            found.append(await lookup.contact(email, "share"))
        except NotFound:  # removed from the directory since
            continue
    return found
