"""service templates (seed 003 ZStack model services)

Revision ID: 0003t
Revises: 0002
Create Date: 2026-12-03 13:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003t"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_templates",
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("yaml", sa.Text(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("request_cpu", sa.Float(), nullable=False),
        sa.Column("request_memory_mib", sa.BigInteger(), nullable=False),
        sa.Column("install_path", sa.String(length=1024), nullable=False),
        sa.Column("start_command", sa.Text(), nullable=False),
        sa.Column("gpu_compute_capability", sa.String(length=16), nullable=False),
        sa.Column("python_version", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("framework", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("model_center_uuid", sa.String(length=64), nullable=False),
        sa.Column("support_distributed", sa.Boolean(), nullable=False),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("images", sa.JSON(), nullable=False),
        sa.Column("model_ids", sa.JSON(), nullable=False),
        sa.Column("env_key", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_service_templates_owner_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_templates")),
        sa.UniqueConstraint("owner_id", "name", name=op.f("uq_service_templates_owner_id")),
    )
    with op.batch_alter_table("service_templates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_service_templates_owner_id"), ["owner_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("service_templates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_templates_owner_id"))
    op.drop_table("service_templates")
