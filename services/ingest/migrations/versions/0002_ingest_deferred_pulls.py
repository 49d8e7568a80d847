"""ingest deferred pulls

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 12:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the table of rate-limited pulls waiting for their not-before time."""
    op.create_table(
        "ingest_deferred_pulls",
        sa.Column("notification_id", sa.String(length=64), nullable=False),
        sa.Column("vendor", sa.String(length=32), nullable=False),
        sa.Column("vendor_user", sa.String(length=128), nullable=False),
        sa.Column("notification", sa.Text(), nullable=False),
        sa.Column("not_before", sa.String(length=32), nullable=False),
        sa.Column("deferred_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("notification_id"),
    )
    with op.batch_alter_table("ingest_deferred_pulls", schema=None) as batch_op:
        batch_op.create_index("ix_ingest_deferred_pulls_not_before", ["not_before"], unique=False)
        batch_op.create_index(
            "ix_ingest_deferred_pulls_vendor_user", ["vendor", "vendor_user"], unique=False
        )


def downgrade() -> None:
    """Drop the deferred pulls table."""
    op.drop_table("ingest_deferred_pulls")
