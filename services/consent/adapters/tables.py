"""Consent service tables (SQLAlchemy Core); the Alembic scripts create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from shared.dbtypes import UtcDateTime
from shared.outbox import outbox_table

metadata = MetaData()

patients = Table(
    "patients",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False, index=True),
    Column("created_at", UtcDateTime, nullable=False),
)

consents = Table(
    "consents",
    metadata,
    Column("consent_id", String(36), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("patient_id", String(64), ForeignKey("patients.patient_id"), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("legal_basis", String(64), nullable=False),
    Column("notice_version", String(64), nullable=False),
    Column("performer_type", String(32), nullable=False),
    Column("performer_reference", String(128), nullable=False),
    Column("evidence_type", String(32), nullable=False),
    Column("evidence_reference", String(256), nullable=False),
    Column("evidence_sha256", String(64), nullable=True),
    Column("period_start", UtcDateTime, nullable=False),
    Column("period_end", UtcDateTime, nullable=True),
    Column("granted_at", UtcDateTime, nullable=False),
    Column("granted_by", String(256), nullable=False),
    Column("granted_client_id", String(256), nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("revoked_by", String(256), nullable=True),
    Column("revocation_reason", String(500), nullable=True),
    Index("ix_consents_patient_purpose", "patient_id", "purpose"),
)

outbox = outbox_table("outbox", metadata)

audit_entries = Table(
    "audit_entries",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("tenant_id", String(64), nullable=True, index=True),
    Column("patient_id", String(64), nullable=True, index=True),
    Column("action", String(64), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("entry", Text, nullable=False),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), nullable=False),
    Column("checkpoint", Text, nullable=False),
    Column("signed_at", UtcDateTime, nullable=False),
)

erasure_requests = Table(
    "erasure_requests",
    metadata,
    Column("request_id", String(36), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("patient_id", String(64), nullable=False, index=True),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("requested_by", String(256), nullable=False),
)

erasure_progress = Table(
    "erasure_progress",
    metadata,
    Column("request_id", String(36), ForeignKey("erasure_requests.request_id"), primary_key=True),
    Column("service", String(32), primary_key=True),
    Column("completed_at", UtcDateTime, nullable=False),
    Column("detail", String(500), nullable=False),
)
