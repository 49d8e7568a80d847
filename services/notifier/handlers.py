"""Notifier event handlers."""

from __future__ import annotations

import structlog

from services.notifier.domain import should_page
from services.notifier.errors import PermanentDeliveryError
from services.notifier.ports import AlertSender, ConsentView, SeenEvents
from shared.consumer import MessageContext
from shared.events import AlertEvent, Purpose
from shared.kafka import UnprocessableEventError

log = structlog.get_logger(__name__)


async def on_alert_event(
    event: AlertEvent,
    ctx: MessageContext,
    *,
    sender: AlertSender,
    seen: SeenEvents,
    consent: ConsentView,
) -> None:
    """Page the on-call channel once per alert event; redeliveries are skipped."""
    if seen.seen(event.event_id):
        log.info("alert_event_duplicate_skipped", event_id=event.event_id)
        return
    if should_page(event) and not consent.allows(event.patient_id, Purpose.MONITORING):
        log.info("alert_cancelled_no_consent", alert_id=event.alert_id, event_id=event.event_id)
    elif should_page(event):
        try:
            await sender.send_alert(event)
        except PermanentDeliveryError as exc:
            raise UnprocessableEventError("delivery_refused", str(exc)) from exc
        log.info(
            "alert_sent",
            alert_id=event.alert_id,
            event_id=event.event_id,
            severity=event.severity.value,
            kind=event.kind.value,
        )
    seen.remember(event.event_id)


async def erase_patient(patient_id: str) -> str:
    """Erasure: the notifier keeps nothing per patient yet (event ids only)."""
    return "nothing stored per patient"


async def export_patient(patient_id: str) -> dict[str, object]:
    """What the notifier holds about a patient: nothing yet (no contact data, no history)."""
    return {"contact": None, "alerts": []}
