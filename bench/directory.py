"""A synthetic directory of realistic size, as an import file (deterministic for a seed).

    .venv/bin/python bench/directory.py --leads 500000 -o /tmp/directory.json
    .venv/bin/python bench/directory.py --tenants 1 --companies 100 --contacts 300 --leads 1000

Defaults: 200 tenants, 50,000 companies, 150,000 contacts, 500,000 leads, spread evenly
over the tenants. Tenant i (from 0) is `t<i>`: host `t<i>.crm.example`, its people write
from `t<i>.example`; company j of it has the key `c<j>` and the domain `c<j>.t<i>.example`,
its contacts are `p<k>@c<j>.t<i>.example`. Leads are numbered from 100000 in each tenant,
with one of four statuses, a contact of their company for two in three, and up to three
planned revenues. bench/throughput.py uses the same names to write its mail.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATUSES = [{"name": "Erstkontakt", "kind": "open"}, {"name": "Angebot", "kind": "open"},
            {"name": "Gewonnen", "kind": "won"}, {"name": "Verloren", "kind": "lost"}]
WORDS = ("Relaunch", "Wartung", "Umzug", "Schulung", "Lizenzen", "Beratung", "Rollout",
         "Migration", "Audit", "Messestand", "Serverraum", "Förderantrag")
FIRST_LEAD = 100_000


@dataclass(frozen=True, slots=True)
class Size:
    tenants: int = 200
    companies: int = 50_000
    contacts: int = 150_000
    leads: int = 500_000

    def share(self, total: int, tenant: int) -> int:
        """Tenant `tenant`'s part of `total`, spread as evenly as integers allow."""
        return total // self.tenants + (1 if tenant < total % self.tenants else 0)


def host(tenant: int) -> str:
    return f"t{tenant}.crm.example"


def sender_domain(tenant: int) -> str:
    return f"t{tenant}.example"


def company_domain(tenant: int, company: int) -> str:
    # A registrable domain of its own: a subdomain of the tenant's sender domain
    # (c1.t0.example) would be the tenant's own, and its contacts never counterparts.
    return f"c{company}-t{tenant}.example"


def contact_email(tenant: int, company: int, contact: int) -> str:
    return f"p{contact}@{company_domain(tenant, company)}"


def tenant(size: Size, index: int, rng: random.Random) -> dict[str, Any]:
    companies = max(1, size.share(size.companies, index))
    contacts = size.share(size.contacts, index)
    leads = size.share(size.leads, index)
    members: list[list[str]] = [[] for _ in range(companies)]
    contact_list = []
    for k in range(contacts):
        company = k % companies
        email = contact_email(index, company, k)
        members[company].append(email)
        contact_list.append({"email": email, "name": f"Person {k}", "company": f"c{company}"})
    lead_list = []
    for n in range(leads):
        company = rng.randrange(companies)
        lead: dict[str, Any] = {
            "number": FIRST_LEAD + n, "name": f"{rng.choice(WORDS)} {n}",
            "company": f"c{company}", "status": rng.choice(STATUSES)["name"]}
        if members[company] and rng.random() < 2 / 3:
            lead["contact"] = rng.choice(members[company])
        months = rng.sample(range(1, 13), rng.randrange(4))
        lead["planned_revenues"] = [{"month": f"2027-{m:02d}",
                                     "amount": f"{rng.randrange(1, 500) * 100}.00"}
                                    for m in sorted(months)]
        lead_list.append(lead)
    return {
        "slug": f"t{index}", "name": f"Tenant {index} GmbH",
        "hosts": [host(index)], "sender_domains": [sender_domain(index)],
        "lead_statuses": STATUSES,
        "companies": [{"key": f"c{j}", "name": f"Company {j} AG",
                       "domains": [company_domain(index, j)]} for j in range(companies)],
        "contacts": contact_list,
        "leads": lead_list,
    }


def tenants(size: Size, seed: int = 1) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for index in range(size.tenants):
        yield tenant(size, index, rng)


def write(path: Path, size: Size, seed: int = 1) -> None:
    """Write the file tenant by tenant: 500,000 leads never sit in memory as one object."""
    with path.open("w") as out:
        out.write('{"tenants": [\n')
        for index, spec in enumerate(tenants(size, seed)):
            out.write((",\n" if index else "") + json.dumps(spec, ensure_ascii=False))
        out.write("\n]}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Size()
    parser.add_argument("--tenants", type=int, default=defaults.tenants)
    parser.add_argument("--companies", type=int, default=defaults.companies)
    parser.add_argument("--contacts", type=int, default=defaults.contacts)
    parser.add_argument("--leads", type=int, default=defaults.leads)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("-o", "--output", type=Path, default=Path("/dev/stdout"))
    args = parser.parse_args(argv)
    size = Size(args.tenants, args.companies, args.contacts, args.leads)
    if min(size.tenants, size.companies) < 1 or min(size.contacts, size.leads) < 0:
        parser.error("at least one tenant and one company; no negative counts")
    write(args.output, size, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
