"""ingest connections

Revision ID: 0001
Revises:
Create Date: 2026-11-23 10:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the connections table."""
    op.create_table(
        "ingest_connections",
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("vendor", sa.String(length=32), nullable=False),
        sa.Column("vendor_user", sa.String(length=128), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("status_reason", sa.String(length=256), nullable=True),
        sa.Column("utc_offset_minutes", sa.Integer(), nullable=True),
        sa.Column("tokens_encrypted", sa.Text(), nullable=True),
        sa.Column("device_key_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("connection_id"),
        sa.UniqueConstraint("vendor", "vendor_user", name="uq_ingest_connections_vendor_user"),
    )
    with op.batch_alter_table("ingest_connections", schema=None) as batch_op:
        batch_op.create_index("ix_ingest_connections_patient_id", ["patient_id"], unique=False)
        batch_op.create_index("ix_ingest_connections_tenant_id", ["tenant_id"], unique=False)


def downgrade() -> None:
    """Drop the connections table."""
    op.drop_table("ingest_connections")
