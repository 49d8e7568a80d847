"""Audit records: every service sends them on audit.v1; the consent service chains and signs them."""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import Field

from shared.events import Event, UtcDatetime

Outcome = Literal["success", "denied", "error"]


class AuditActor(Event):
    """Who acted: a token subject, a service, a vendor, a Slack user."""

    type: Literal["user", "service", "vendor", "slack", "anonymous"]
    id: str = Field(max_length=256)
    client_id: str | None = None
    tenant_id: str | None = None
    jti: str | None = None


class AuditRecorded(Event):
    """One auditable action (who, client, what, when, purpose, legal basis, whose data, outcome)."""

    event_id: str = Field(description="Deterministic where the action is, so replays dedupe.")
    occurred_at: UtcDatetime
    service: str
    actor: AuditActor
    action: str = Field(description="e.g. consent.grant, consent.revoke, authz.denied, alert.ack")
    patient_id: str | None = None
    tenant_id: str | None = None
    purpose: str | None = None
    legal_basis: str | None = None
    outcome: Outcome
    reason: str | None = Field(None, max_length=500)
    request_id: str | None = None
    details: dict[str, str] = Field(default_factory=dict)


class AuditSink(Protocol):
    """Where a service hands its audit records (Kafka in production, the database in consent)."""

    async def record(self, record: AuditRecorded) -> None:
        """Persist or publish the record durably; raise if that is impossible."""
