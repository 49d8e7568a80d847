"""What the notifier stores, as plain values: alerts and deliveries (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from services.notifier.domain import AlertSnapshot, next_wake
from services.notifier.domain.slack_blocks import event_fields
from services.notifier.ports import Channel
from shared.events import AlertEvent


@dataclass(frozen=True)
class AlertRow:
    """An alert as stored: its escalation snapshot, the last event and how it was acknowledged."""

    snapshot: AlertSnapshot
    last_event: AlertEvent
    tenant_id: str | None
    opened_at: datetime
    updated_at: datetime
    acknowledged_via: str | None = None
    slack_ref: str | None = None
    version: int = 0

    @property
    def alert_id(self) -> str:
        """The alert's id."""
        return self.snapshot.alert_id

    @property
    def status(self) -> str:
        """open, acknowledged, resolved or cancelled."""
        s = self.snapshot
        if s.cancelled_at is not None:
            return "cancelled"
        if s.resolved_at is not None:
            return "resolved"
        return "acknowledged" if s.acknowledged else "open"

    def summary(self) -> dict[str, Any]:
        """The AlertSummary the API and the dashboard show."""
        return dict(self._summary)

    @cached_property
    def _summary(self) -> dict[str, Any]:
        # Built once per row (the row is frozen): saving it and the live feed both need it.
        s, fields = self.snapshot, dict(event_fields(self.last_event))
        return {
            "alert_id": s.alert_id,
            "patient_id": s.patient_id,
            "severity": s.severity.value,
            "status": self.status,
            "title": s.subject,
            "value_text": fields.get("Value", ""),
            "threshold": self.last_event.rule.threshold,
            "opened_at": self.opened_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "level": s.level_reached,
            "acknowledged_by": s.acknowledged_by.agent_id if s.acknowledged_by else None,
            # A re-triggered ack clears acknowledged_by; the channel it came from goes with it.
            "acknowledged_via": self.acknowledged_via if s.acknowledged_by else None,
        }

    def values(self) -> dict[str, Any]:
        """Column values of the row (all but slack_ref, which only the dispatcher sets)."""
        summary, s = self._summary, self.snapshot
        return {
            "alert_id": s.alert_id,
            "patient_id": s.patient_id,
            "tenant_id": self.tenant_id,
            "severity": s.severity.value,
            "status": summary["status"],
            "title": summary["title"][:200],
            "value_text": summary["value_text"][:500],
            "threshold": summary["threshold"][:200],
            "opened_at": self.opened_at,
            "updated_at": self.updated_at,
            "level": s.level_reached,
            "snapshot": s.model_dump_json(),
            "acknowledged_by": summary["acknowledged_by"],
            "acknowledged_via": summary["acknowledged_via"],
            "acknowledged_at": s.acknowledged_at,
            "resolved_at": s.resolved_at or s.cancelled_at,
            "next_wake_at": next_wake(s),
            "last_event": self.last_event.model_dump_json(),
            "version": self.version,
        }


@dataclass(frozen=True)
class NewDelivery:
    """A send to queue. `plan` is the recipient's whole channel plan (for fallback)."""

    key: str
    alert_id: str
    patient_id: str
    event: str
    role: str  # post | update | reply
    channel: Channel
    recipient: str
    recipient_kind: str  # oncall | agent | patient | ops
    recipient_label: str  # who, never an address: Slack channel, agent id, "patient"
    payload: dict[str, Any]
    plan: dict[str, Any] = field(default_factory=dict)
    ref_id: int | None = None
    not_before: datetime | None = None


@dataclass(frozen=True)
class DeliveryRow:
    """A stored delivery."""

    id: int
    key: str
    alert_id: str
    patient_id: str
    event: str
    role: str
    channel: Channel
    recipient: str
    recipient_kind: str
    recipient_label: str
    payload: dict[str, Any]
    plan: dict[str, Any]
    ref_id: int | None
    status: str
    attempts: int
    next_attempt_at: datetime
    claim_token: str | None
    provider_ref: str | None
    provider_status: str | None = None
    last_error: str | None = None
    created_at: datetime | None = None
    sent_at: datetime | None = None
