"""import baseline: what the import file gave each tenant, lead status, company, contact,
project and lead

Revision ID: 0005
Revises: 0004

A re-import keeps a value changed in the CRM since the last import and reports the
conflict; to tell, it needs the values the file gave last time (a tenant's: its review and
sender policy and the order of its statuses; a status's: its name and kind, so one renamed
in the CRM is still found by the name the file knows). Rows that exist already
were imported (or made) before this was kept: they get `{}`, which the importer reads as
"last imported as they are now", so the first import after the upgrade applies the file
as before (within the library's rules). Rows made later through the library stay NULL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = ("tenants", "lead_statuses", "companies", "contacts", "projects", "leads")

# The views as 0004 made them; SQLite rebuilds a table to drop a column, so they go first.
HISTORY_VIEW = """
CREATE VIEW crm_history AS
SELECT h.id, t.slug AS tenant, m.message_id, m.direction, m.subject, m.sender,
       m.sent_at, m.received_at, c.key AS company, ct.email AS contact,
       l.number AS lead, p.number AS project, h.filed_by, h.filed_at, m.body
FROM history_entries h
JOIN tenants t ON t.id = h.tenant_id
JOIN inbound_messages m ON m.id = h.inbound_message_id
LEFT JOIN companies c ON c.id = h.company_id
LEFT JOIN contacts ct ON ct.id = h.contact_id
LEFT JOIN leads l ON l.id = h.lead_id
LEFT JOIN projects p ON p.id = h.project_id
"""
PENDING_VIEW = """
CREATE VIEW crm_pending AS
SELECT q.id, t.slug AS tenant, q.state, q.reasons, q.candidates, q.created_at,
       q.resolved_by, q.resolved_at, q.note, m.message_id, m.direction, m.subject,
       m.sender, m.sent_at, m.body, m.error
FROM pending_matches q
JOIN tenants t ON t.id = q.tenant_id
JOIN inbound_messages m ON m.id = q.inbound_message_id
"""


def upgrade() -> None:
    for table in TABLES:  # a nullable column: a plain ALTER TABLE on both backends
        op.add_column(table, sa.Column("imported", sa.JSON(), nullable=True))
        op.execute(f"UPDATE {table} SET imported = '{{}}'")


def downgrade() -> None:
    op.execute("DROP VIEW crm_pending")
    op.execute("DROP VIEW crm_history")
    for table in TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("imported")
    op.execute(HISTORY_VIEW)
    op.execute(PENDING_VIEW)
