"""name keys and thread references: leads and projects searchable by the name a subject
carries; a message keeps the Message-IDs it replies to

Revision ID: 0006
Revises: 0005

Issue 9, rule 3: a lead or project is found by its whole name in the subject, compared
casefolded and word by word (crm_mailer.matching.subject.name_key). SQL's lower() is not
casefold (SQLite's folds only ASCII), so the key is computed in Python, stored beside the
name and indexed per tenant. Rules 2 and 9: rematch follows a reply's thread from the
stored references, and a forward's original from the stored reading of it (NULL for mail
stored before: it is matched as before).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from crm_mailer.matching.subject import name_key

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("leads", "projects")

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
    connection = op.get_bind()
    for table in TABLES:
        op.add_column(table, sa.Column("name_key", sa.String(1024), nullable=True))
        rows = sa.table(table, sa.column("id", sa.Integer), sa.column("name", sa.String),
                        sa.column("name_key", sa.String))
        keys = [{"row_id": row_id, "key": name_key(name)}
                for row_id, name in connection.execute(sa.select(rows.c.id, rows.c.name))]
        if keys:
            connection.execute(rows.update().where(rows.c.id == sa.bindparam("row_id"))
                               .values(name_key=sa.bindparam("key")), keys)
        op.create_index(f"ix_{table}_tenant_id_name_key", table, ["tenant_id", "name_key"])
        # A mail's companies' open records are read for every message (rules 3 and 4).
        op.create_index(f"ix_{table}_tenant_id_company_id", table, ["tenant_id", "company_id"])
    op.add_column("inbound_messages", sa.Column("thread_references", sa.JSON(), nullable=True))
    op.add_column("inbound_messages", sa.Column("forwarded", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.execute("DROP VIEW crm_pending")
    op.execute("DROP VIEW crm_history")
    with op.batch_alter_table("inbound_messages") as batch:
        batch.drop_column("thread_references")
        batch.drop_column("forwarded")
    for table in TABLES:
        op.drop_index(f"ix_{table}_tenant_id_name_key", table_name=table)
        op.drop_index(f"ix_{table}_tenant_id_company_id", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("name_key")
    op.execute(HISTORY_VIEW)
    op.execute(PENDING_VIEW)
