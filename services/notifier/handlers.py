"""Notifier event handlers."""

from __future__ import annotations

import structlog

from services.notifier.domain import should_page
from services.notifier.errors import PermanentDeliveryError
from services.notifier.ports import AlertSender, SeenEvents
from shared.events import AlertEvent
from shared.kafka import MessageContext, UnprocessableEventError

log = structlog.get_logger(__name__)


async def on_alert_event(
    event: AlertEvent, ctx: MessageContext, *, sender: AlertSender, seen: SeenEvents
) -> None:
    """Page the on-call channel once per alert event; redeliveries are skipped."""
    if seen.seen(event.event_id):
        log.info("alert_event_duplicate_skipped", event_id=event.event_id)
        return
    if should_page(event):
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
