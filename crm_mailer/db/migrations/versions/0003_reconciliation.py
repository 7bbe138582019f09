"""reconciliation: review policy, resolution of pending matches, correction audit, read views

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The main app reads these (docs/integration.md): stable names, no internal ids it must join.
# SQLite rebuilds a table to alter it: a later migration that alters a table these views
# read must drop the views first and create them again after.
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
       m.sender, m.sent_at, m.body
FROM pending_matches q
JOIN tenants t ON t.id = q.tenant_id
JOIN inbound_messages m ON m.id = q.inbound_message_id
"""


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch_op:
        batch_op.add_column(sa.Column(
            "review", sa.Enum("uncertain", "all", name="review_policy", native_enum=False,
                              create_constraint=True, length=16),
            server_default="uncertain", nullable=False))
    with op.batch_alter_table("pending_matches") as batch_op:
        batch_op.add_column(sa.Column("resolved_by", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))
    op.create_table(
        "history_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("history_entry_id", sa.Integer(), nullable=False),
        sa.Column("changed_by", sa.String(length=255), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("before", sa.JSON(), nullable=False),
        sa.Column("after", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["history_entry_id"], ["history_entries.id"],
                                name=op.f("fk_history_changes_history_entry_id_history_entries"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name=op.f("fk_history_changes_tenant_id_tenants"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_history_changes")),
    )
    op.create_index(op.f("ix_history_changes_history_entry_id"), "history_changes",
                    ["history_entry_id"])
    op.execute(HISTORY_VIEW)
    op.execute(PENDING_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW crm_pending")
    op.execute("DROP VIEW crm_history")
    op.drop_index(op.f("ix_history_changes_history_entry_id"), table_name="history_changes")
    op.drop_table("history_changes")
    with op.batch_alter_table("pending_matches") as batch_op:
        batch_op.drop_column("note")
        batch_op.drop_column("resolved_at")
        batch_op.drop_column("resolved_by")
    with op.batch_alter_table("tenants") as batch_op:
        batch_op.drop_constraint(op.f("ck_tenants_review_policy"), type_="check")
        batch_op.drop_column("review")
