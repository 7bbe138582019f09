"""The benchmark's mail lands as it says: its figures are only worth something if the
"certain" 70% are filed, the 20% without a number are queued and the 10% from a stranger
are refused. (Its company domains were once subdomains of the tenant's own domain, which
made every contact the tenant's own and queued every message.)"""

from __future__ import annotations

import collections

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench import directory, throughput
from crm_mailer import ingest
from crm_mailer.errors import MessageRefused
from tests.conftest import load_directory

SIZE = directory.Size(tenants=3, companies=30, contacts=90, leads=300)


async def test_the_benchmark_mix_is_filed_queued_and_refused_as_meant(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await load_directory(sessions, {"tenants": list(directory.tenants(SIZE))})
    messages, kinds = throughput.mix(throughput.targets(SIZE), 60, seed=2)
    messages, _ = throughput.with_ids(messages, "mix")
    landed: collections.Counter[str] = collections.Counter()
    for sender, recipient, raw in messages:
        try:
            result = await ingest.ingest(sessions, raw=raw, envelope_sender=sender,
                                         recipients=[recipient])
        except MessageRefused:
            landed["refused"] += 1
            continue
        landed.update("certain" if o.outcome is ingest.Outcome.FILED else o.outcome.value
                      for o in result.outcomes)
    assert kinds["certain"] and kinds["queued"] and kinds["refused"]
    assert dict(landed) == kinds
