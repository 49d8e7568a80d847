"""on_alert_event: one page per event, none for a patient without monitoring consent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.notifier.adapters.dedup import RecentEventIds
from services.notifier.errors import PermanentDeliveryError
from services.notifier.handlers import on_alert_event
from shared.consent_view import ConsentState
from shared.consumer import MessageContext
from shared.events import AlertEvent, AlertKind, ConsentChanged, Purpose, Severity, TriggerReading
from shared.kafka import UnprocessableEventError
from tests.services.notifier.rules import HEART_RATE_HIGH

AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CTX = MessageContext(topic="alerts.v1", partition=0, offset=0, key=b"pt-1")


def alert(event_id: str = "e-1", patient: str = "pt-1") -> AlertEvent:
    return AlertEvent(
        event_id=event_id,
        alert_id="a-1",
        patient_id=patient,
        kind=AlertKind.OPENED,
        severity=Severity.RED,
        previous_severity=Severity.GREEN,
        rule=HEART_RATE_HIGH,
        readings=(
            TriggerReading(
                reading_id="r", metric="heart_rate", value=140, unit="/min", measured_at=AT
            ),
        ),
        occurred_at=AT,
    )


def consent(*granted: str) -> ConsentState:
    state = ConsentState(consent_required=True)
    for patient in granted:
        state.apply(
            ConsentChanged(
                event_id=f"c-{patient}",
                patient_id=patient,
                tenant_id="t",
                consent_id="c",
                purpose=Purpose.MONITORING,
                change="granted",
                purpose_active=True,
                changed_at=AT,
            )
        )
    state.caught_up = True
    return state


class Recorder:
    def __init__(self, refuse: bool = False) -> None:
        self.sent: list[str] = []
        self.refuse = refuse

    async def send_alert(self, event: AlertEvent) -> None:
        if self.refuse:
            raise PermanentDeliveryError("slack refused: channel_not_found")
        self.sent.append(event.event_id)


async def test_each_event_is_sent_once() -> None:
    sender, seen = Recorder(), RecentEventIds()
    for event_id in ("e-1", "e-1", "e-2"):
        await on_alert_event(
            alert(event_id), CTX, sender=sender, seen=seen, consent=consent("pt-1")
        )
    assert sender.sent == ["e-1", "e-2"]


async def test_no_page_without_monitoring_consent() -> None:
    sender = Recorder()
    await on_alert_event(alert(), CTX, sender=sender, seen=RecentEventIds(), consent=consent())
    assert sender.sent == []


async def test_a_permanent_refusal_is_dead_lettered_not_retried() -> None:
    with pytest.raises(UnprocessableEventError, match="channel_not_found"):
        await on_alert_event(
            alert(),
            CTX,
            sender=Recorder(refuse=True),
            seen=RecentEventIds(),
            consent=consent("pt-1"),
        )
