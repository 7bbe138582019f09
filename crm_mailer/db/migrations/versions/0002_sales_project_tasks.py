"""sales project flag and project tasks (time on leads is booked on the sales project)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch_op:
        batch_op.add_column(sa.Column("is_sales_project", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    # At most one sales project per tenant, enforced by the database.
    op.create_index("uq_projects_sales_project", "projects", ["tenant_id"], unique=True,
                    postgresql_where=sa.text("is_sales_project"),
                    sqlite_where=sa.text("is_sales_project"))
    op.create_table(
        "project_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                name=op.f("fk_project_tasks_tenant_id_tenants"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"],
                                name=op.f("fk_project_tasks_project_id_projects"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"],
                                name=op.f("fk_project_tasks_company_id_companies"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_tasks")),
        sa.UniqueConstraint("project_id", "company_id",
                            name=op.f("uq_project_tasks_project_id_company_id")),
    )


def downgrade() -> None:
    op.drop_table("project_tasks")
    op.drop_index("uq_projects_sales_project", table_name="projects")
    with op.batch_alter_table("projects") as batch_op:
        batch_op.drop_column("is_sales_project")
