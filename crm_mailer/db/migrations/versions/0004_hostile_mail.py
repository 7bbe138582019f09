"""hostile mail: exact Message-IDs, unprocessable messages, sender policy, raw in chunks

Revision ID: 0004
Revises: 0003

Message-IDs used to be read as ASCII with replacement, so distinct IDs could share a key.
Every stored row gets its key again from its raw bytes, with the exact reading.
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The views as 0003 made them (crm_pending gains the error column here).
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
OLD_PENDING_VIEW = """
CREATE VIEW crm_pending AS
SELECT q.id, t.slug AS tenant, q.state, q.reasons, q.candidates, q.created_at,
       q.resolved_by, q.resolved_at, q.note, m.message_id, m.direction, m.subject,
       m.sender, m.sent_at, m.body
FROM pending_matches q
JOIN tenants t ON t.id = q.tenant_id
JOIN inbound_messages m ON m.id = q.inbound_message_id
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
    # SQLite rebuilds the tables it alters: the views that read them go first.
    op.execute("DROP VIEW crm_pending")
    op.execute("DROP VIEW crm_history")
    with op.batch_alter_table("tenants") as batch_op:
        batch_op.add_column(sa.Column(
            "sender_policy", sa.Enum("aligned", "dkim", "header", name="sender_policy",
                                     native_enum=False, create_constraint=True, length=16),
            server_default="aligned", nullable=False))
    with op.batch_alter_table("inbound_messages") as batch_op:
        batch_op.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("raw_chunks", sa.Integer(), server_default=sa.text("0"),
                                      nullable=False))
        batch_op.alter_column("direction", existing_type=sa.String(length=16), nullable=True)
    op.create_table(
        "message_chunks",
        sa.Column("inbound_message_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["inbound_message_id"], ["inbound_messages.id"],
                                name=op.f("fk_message_chunks_inbound_message_id_inbound_messages"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("inbound_message_id", "seq", name=op.f("pk_message_chunks")),
    )
    op.execute(HISTORY_VIEW)
    op.execute(PENDING_VIEW)
    _rekey_message_ids()


def _rekey_message_ids() -> None:
    """Read every stored Message-ID again, exactly, from the stored bytes."""
    from crm_mailer.errors import MessageRefused
    from crm_mailer.mail.header_block import read_header_block
    from crm_mailer.mail.parse import message_key

    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT id, tenant_id, message_id, raw FROM inbound_messages "
        "WHERE NOT message_id_derived ORDER BY id")).all()
    wanted: dict[int, str] = {}
    taken: dict[int, set[str]] = defaultdict(set)
    for row_id, tenant_id, old, raw in rows:
        taken[tenant_id].add(old)
        try:
            block = read_header_block(bytes(raw), max_size=2**31, max_fields=2**31)
        except MessageRefused:
            continue
        new, derived = message_key(block, bytes(raw))
        if not derived and new != old:
            wanted[row_id] = new
    owner = {row_id: tenant_id for row_id, tenant_id, _, _ in rows}
    final: dict[int, str] = {}
    for row_id, new in wanted.items():  # never two rows of one tenant on one key
        if new not in taken[owner[row_id]]:
            taken[owner[row_id]].add(new)
            final[row_id] = new
    update = sa.text("UPDATE inbound_messages SET message_id = :key WHERE id = :id")
    for row_id in final:  # two steps, so no row meets another's old key on the way
        bind.execute(update, {"key": f"rekey-{row_id}@migration.crm-mailer.invalid",
                              "id": row_id})
    for row_id, new in final.items():
        bind.execute(update, {"key": new, "id": row_id})


def downgrade() -> None:
    op.execute("DROP VIEW crm_pending")
    op.execute("DROP VIEW crm_history")
    op.drop_table("message_chunks")
    with op.batch_alter_table("inbound_messages") as batch_op:
        batch_op.drop_column("raw_chunks")
        batch_op.drop_column("error")
    with op.batch_alter_table("tenants") as batch_op:
        batch_op.drop_constraint(op.f("ck_tenants_sender_policy"), type_="check")
        batch_op.drop_column("sender_policy")
    op.execute(HISTORY_VIEW)
    op.execute(OLD_PENDING_VIEW)
