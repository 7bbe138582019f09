"""machine mail: a received message can be ignored, and every message shows its outcome

Revision ID: 0007
Revises: 0006

Issue 9, rule 8: an auto-reply, a delivery report or list traffic is kept as received and
neither filed nor queued; `inbound_messages.ignored` holds why. Every other outcome already
follows from the rows a message has (a history entry: filed; a queue item: queued,
refused or expired), so nothing is backfilled: mail stored before this revision shows
the outcome it had. The main app reads every received message with its outcome from the
new view `crm_messages` (docs/integration.md); the index serves listing a tenant's
messages newest first.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# As crm_mailer.views.OUTCOME: a history entry first (a filed mail may also wait for a
# review), then the machine-mail reason, then the queue item's state. The reasons of ignored
# mail are its machine-mail reason (an item reprocessing rejected keeps `unprocessable`).
MESSAGES_VIEW = """
CREATE VIEW crm_messages AS
SELECT m.id, t.slug AS tenant, m.message_id, m.direction, m.subject, m.sender, m.sent_at,
       m.received_at,
       CASE WHEN h.id IS NOT NULL THEN 'filed'
            WHEN m.ignored IS NOT NULL THEN 'ignored'
            WHEN q.state = 'waiting' THEN 'queued'
            WHEN q.state = 'rejected' THEN 'refused'
            WHEN q.state = 'expired' THEN 'expired'
       END AS outcome,
       CASE WHEN m.ignored IS NOT NULL THEN {reason_list}
            ELSE COALESCE(q.reasons, {empty_list}) END AS reasons,
       q.note, m.error, h.id AS history_id, q.id AS pending_id
FROM inbound_messages m
JOIN tenants t ON t.id = m.tenant_id
LEFT JOIN history_entries h ON h.inbound_message_id = m.id
LEFT JOIN pending_matches q ON q.inbound_message_id = m.id
"""
# JSON is json on PostgreSQL and text on SQLite; each builds the one-reason list its way.
JSON_LISTS = {
    "postgresql": ("json_build_array(m.ignored)", "'[]'::json"),
    "sqlite": ("json_array(m.ignored)", "'[]'"),
}

# The views as 0004 made them (0005 and 0006 kept them): dropped and made again around
# each rebuild of inbound_messages.
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
    # SQLite rebuilds the table to add the column with its CHECK: the views that read the
    # table go first (foreign keys are off meanwhile, see crm_mailer.db.migrate).
    op.execute("DROP VIEW crm_pending")
    op.execute("DROP VIEW crm_history")
    with op.batch_alter_table("inbound_messages") as batch_op:
        batch_op.add_column(sa.Column(
            "ignored", sa.Enum("auto_reply", "delivery_report", "mailing_list",
                               name="machine_reason", native_enum=False,
                               create_constraint=True, length=16),
            nullable=True))
    op.create_index("ix_inbound_messages_tenant", "inbound_messages", ["tenant_id", "id"])
    op.execute(HISTORY_VIEW)
    op.execute(PENDING_VIEW)
    reason_list, empty_list = JSON_LISTS[op.get_bind().dialect.name]
    op.execute(MESSAGES_VIEW.format(reason_list=reason_list, empty_list=empty_list))


def downgrade() -> None:
    op.execute("DROP VIEW crm_messages")
    op.execute("DROP VIEW crm_pending")
    op.execute("DROP VIEW crm_history")
    op.drop_index("ix_inbound_messages_tenant", table_name="inbound_messages")
    with op.batch_alter_table("inbound_messages") as batch_op:
        batch_op.drop_constraint(op.f("ck_inbound_messages_machine_reason"), type_="check")
        batch_op.drop_column("ignored")
    op.execute(HISTORY_VIEW)
    op.execute(PENDING_VIEW)
