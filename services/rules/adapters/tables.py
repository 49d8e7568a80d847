"""Rules service tables (SQLAlchemy Core); the Alembic scripts create them."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table, Text

from shared.dbtypes import UtcDateTime
from shared.outbox import outbox_table

metadata = MetaData()

# One row per patient: the engine's state (versioned JSON), and the partition that owns it.
patient_states = Table(
    "rules_patient_states",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("partition", Integer, nullable=False, index=True),
    Column("state", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Clinician-set bands per patient (the source of truth; thresholds.v1 only propagates changes).
patient_thresholds = Table(
    "rules_patient_thresholds",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("thresholds", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("updated_by", String(256), nullable=False),
)

outbox = outbox_table("rules_outbox", metadata)
