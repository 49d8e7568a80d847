"""Notifier tables (SQLAlchemy Core); the Alembic scripts create them."""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, MetaData, String, Table, Text

from shared.dbtypes import UtcDateTime
from shared.outbox import outbox_table

metadata = MetaData()

# alerts.v1 event ids already handled, written in the transaction of everything the event caused.
events = Table(
    "notifier_events",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("alert_id", String(128), nullable=False),
    Column("processed_at", UtcDateTime, nullable=False),
)

# One row per alert: what the dashboard lists, plus the escalation snapshot (policy frozen at open).
alerts = Table(
    "notifier_alerts",
    metadata,
    Column("alert_id", String(128), primary_key=True),
    Column("patient_id", String(64), nullable=False, index=True),
    Column("tenant_id", String(64), nullable=True, index=True),
    Column("severity", String(8), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("title", String(200), nullable=False),
    Column("value_text", String(500), nullable=False),
    Column("threshold", String(200), nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("level", Integer, nullable=False),
    Column("snapshot", Text, nullable=False),
    Column("acknowledged_by", String(256), nullable=True),
    Column("acknowledged_via", String(16), nullable=True),
    Column("acknowledged_at", UtcDateTime, nullable=True),
    Column("resolved_at", UtcDateTime, nullable=True),
    Column("next_wake_at", UtcDateTime, nullable=True, index=True),
    Column("slack_ref", String(128), nullable=True),
    Column("last_event", Text, nullable=False),
    Column("version", Integer, nullable=False),
)

# One row per message to one recipient on one channel (a fallback to another channel is a new row).
# role: post (a new message), update (chat.update of ref_id), reply (thread reply under ref_id).
deliveries = Table(
    "notifier_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(512), nullable=False, unique=True),
    Column("alert_id", String(128), nullable=False, index=True),
    Column("patient_id", String(64), nullable=False, index=True),
    Column("event", String(64), nullable=False),
    Column("role", String(8), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("recipient", Text, nullable=False),
    Column("recipient_kind", String(8), nullable=False),
    Column("recipient_label", String(128), nullable=False),
    Column("payload", Text, nullable=False),
    Column("candidates", Text, nullable=False),
    Column("ref_id", Integer, nullable=True),
    Column("status", String(10), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("claimed_until", UtcDateTime, nullable=True),
    Column("claim_token", String(32), nullable=True, index=True),
    Column("last_error", String(500), nullable=True),
    Column("provider_ref", String(256), nullable=True, index=True),
    Column("provider_status", String(32), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_notifier_deliveries_due", "status", "next_attempt_at"),
)

# A patient's contact preferences (PUT /v1/patients/{id}/contact); deleted on erasure.
contacts = Table(
    "notifier_contacts",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("prefs", Text, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("updated_by", String(256), nullable=False),
)

# Addresses a provider said are dead (FCM UNREGISTERED, Twilio 21610 opted out), never tried again.
# Keyed by a hash of (channel, address): the table itself holds no phone number or token.
disabled_addresses = Table(
    "notifier_disabled_addresses",
    metadata,
    Column("address_hash", String(64), primary_key=True),
    Column("channel", String(16), nullable=False),
    Column("patient_id", String(64), nullable=True, index=True),
    Column("code", String(64), nullable=False),
    Column("disabled_at", UtcDateTime, nullable=False),
)

# What happened to an alert, in order: who was notified where and when, who acknowledged how.
timeline = Table(
    "notifier_timeline",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", String(128), nullable=False, index=True),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("actor", String(256), nullable=True),
    Column("channel", String(16), nullable=True),
    Column("detail", String(500), nullable=False),
)

# Dead letters of deliveries that exhausted every channel, relayed to deadletter.v1.
outbox = outbox_table("notifier_outbox", metadata)
