"""Ingest service tables (SQLAlchemy Core); the Alembic scripts create them."""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

from shared.dbtypes import UtcDateTime

metadata = MetaData()

# A vendor account (Fitbit owner, Google health user, Garmin user, Apple device key) linked to a
# pseudonymous patient. OAuth tokens are stored encrypted (Fernet); device keys only as SHA-256.
connections = Table(
    "ingest_connections",
    metadata,
    Column("connection_id", String(36), primary_key=True),
    Column("vendor", String(32), nullable=False),
    Column("vendor_user", String(128), nullable=False),
    Column("patient_id", String(64), nullable=False, index=True),
    Column("tenant_id", String(64), nullable=False, index=True),
    Column("status", String(32), nullable=False),
    Column("status_reason", String(256), nullable=True),
    Column("utc_offset_minutes", Integer, nullable=True),
    Column("tokens_encrypted", Text, nullable=True),
    Column("device_key_hash", String(64), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("created_by", String(256), nullable=False),
    UniqueConstraint("vendor", "vendor_user", name="uq_ingest_connections_vendor_user"),
)

# A pull the vendor rate-limited (429): kept until `not_before`, then put back on
# vendor-notifications.v1. One row per notification id, so repeated notices coalesce.
deferred_pulls = Table(
    "ingest_deferred_pulls",
    metadata,
    Column("notification_id", String(64), primary_key=True),
    Column("vendor", String(32), nullable=False),
    Column("vendor_user", String(128), nullable=False),
    Column("notification", Text, nullable=False),
    Column("not_before", UtcDateTime, nullable=False, index=True),
    Column("deferred_at", UtcDateTime, nullable=False),
    Index("ix_ingest_deferred_pulls_vendor_user", "vendor", "vendor_user"),
)
