"""Shared pieces of the notifier's handler, store and worker tests: a routing file with second-
scale delays, a clock the test moves, a notifier on a real database, event builders."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from services.notifier.adapters import deliveries
from services.notifier.adapters.contacts import StoredContact, put_contact
from services.notifier.adapters.store import Store, read_alert
from services.notifier.adapters.tables import deliveries as d
from services.notifier.adapters.tables import timeline
from services.notifier.app import MIGRATIONS
from services.notifier.domain import ContactPreferences, load_routing
from services.notifier.handlers import Notifier, on_alert_events
from services.notifier.records import AlertRow, DeliveryRow
from shared.consent_view import ConsentState
from shared.consumer import MessageContext
from shared.db import make_engine, migrate
from shared.events import (
    AlertEvent,
    AlertKind,
    ConsentChanged,
    Purpose,
    Severity,
    TriggerReading,
)
from tests.services.notifier.rules import HEART_RATE_HIGH

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ROUTING = """
agents:
  - {id: ana, name: Ana, slack_user_id: U0NURSE01, phone: "+5511900000001", role: agent,
     push_tokens: [tok-ana]}
  - {id: max, name: Max, slack_user_id: U0MANAGER1, phone: "+5511900000002", role: manager}
severities:
  red: {slack_channel: "#care-alerts", policy: red}
  yellow: {slack_channel: "#care-alerts", policy: yellow}
policies:
  red:
    ack_timeout: 30s
    levels:
      - {after: 0s, notify: [oncall_slack, patient]}
      - {after: 2s, notify: [{role: agent, via: [sms, push]}]}
      - {after: 4s, notify: [{role: manager, via: [sms]}]}
  yellow:
    levels:
      - {after: 0s, notify: [oncall_slack]}
"""
PATIENT_PHONE = "+5511988887777"


@dataclass
class Clock:
    """Time as the test says."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def consent(*, required: bool = False) -> ConsentState:
    """A consent view that has caught up (nothing recorded: allowed unless `required`)."""
    state = ConsentState(consent_required=required)
    state.caught_up = True
    return state


def consent_event(patient: str, purpose: Purpose, active: bool) -> ConsentChanged:
    """What the consent service publishes."""
    return ConsentChanged(
        event_id=f"c-{patient}-{purpose.value}-{active}",
        patient_id=patient,
        tenant_id="tenant-a",
        consent_id="c-1",
        purpose=purpose,
        change="granted" if active else "revoked",
        purpose_active=active,
        changed_at=T0,
    )


async def make_notifier(url: str, clock: Clock, schema: str | None = None) -> Notifier:
    """A notifier on a migrated database."""
    engine = make_engine(url, schema=schema)
    await migrate(engine, MIGRATIONS)
    return Notifier(
        store=Store(engine, clock=clock),
        routing=load_routing(ROUTING),
        consent=consent(),
        dashboard_url="http://127.0.0.1:8003/",
        ops_channel="#care-ops",
    )


def alert_event(
    event_id: str = "e-1",
    *,
    alert_id: str = "a-1",
    patient: str = "pt-1",
    kind: AlertKind = AlertKind.OPENED,
    severity: Severity = Severity.RED,
    value: float = 140,
) -> AlertEvent:
    """An alerts.v1 event as the rules service emits it."""
    return AlertEvent(
        event_id=event_id,
        alert_id=alert_id,
        patient_id=patient,
        kind=kind,
        severity=severity,
        previous_severity=Severity.GREEN,
        rule=HEART_RATE_HIGH,
        readings=(
            TriggerReading(
                reading_id=f"r-{event_id}",
                metric="heart_rate",
                value=value,
                unit="/min",
                measured_at=T0,
            ),
        ),
        occurred_at=T0,
    )


async def feed(n: Notifier, *events: AlertEvent) -> None:
    """Hand events to the notifier as one poll batch."""
    batch = [
        (e, MessageContext(topic="alerts.v1", partition=0, offset=i, key=e.patient_id.encode()))
        for i, e in enumerate(events)
    ]
    assert await on_alert_events(batch, notifier=n) == []


async def set_contact(n: Notifier, patient: str = "pt-1", **prefs: Any) -> None:
    """Store a patient's contact preferences (SMS by default)."""
    values = {"phone": PATIENT_PHONE, "preferred_channels": ["sms"]} | prefs
    async with n.store.transaction() as tx:
        await put_contact(
            tx.conn,
            StoredContact(
                patient_id=patient,
                tenant_id="tenant-a",
                prefs=ContactPreferences.model_validate(values),
                updated_at=T0,
                updated_by="test",
            ),
        )


async def rows(n: Notifier, alert_id: str = "a-1") -> list[DeliveryRow]:
    """Every delivery of an alert, oldest first."""
    async with n.store.reading() as conn:
        return await deliveries.of_alert(conn, alert_id)


async def mark_sent(n: Notifier, *ids: int) -> None:
    """Record rows as sent, as the dispatcher would after the provider accepted them."""
    async with n.store.transaction() as tx:
        for row_id in ids:
            await tx.conn.execute(
                update(d)
                .where(d.c.id == row_id)
                .values(status="sent", provider_ref=f"C0CAREALERT:{row_id}.0", sent_at=tx.now)
            )


async def alert_row(n: Notifier, alert_id: str = "a-1") -> AlertRow:
    """The stored alert."""
    async with n.store.reading() as conn:
        row = await read_alert(conn, alert_id)
    assert row is not None
    return row


async def timeline_kinds(n: Notifier, alert_id: str = "a-1") -> list[str]:
    """The kinds of an alert's timeline entries, in order."""
    async with n.store.reading() as conn:
        result = await conn.execute(
            select(timeline.c.kind).where(timeline.c.alert_id == alert_id).order_by(timeline.c.id)
        )
        return [r.kind for r in result]


def summary(items: list[DeliveryRow]) -> list[tuple[str, str, str, str, str]]:
    """(role, channel, recipient kind, label, status) of each row: what a test compares."""
    return [(r.role, r.channel.value, r.recipient_kind, r.recipient_label, r.status) for r in items]
