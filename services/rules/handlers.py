"""Rules event handlers."""

from __future__ import annotations

import structlog

from services.rules.domain import evaluate
from services.rules.ports import AlertPublisher, StateStore
from shared.events import Reading
from shared.kafka import MessageContext

log = structlog.get_logger(__name__)


async def on_reading_received(
    reading: Reading, ctx: MessageContext, *, store: StateStore, publisher: AlertPublisher
) -> None:
    """Evaluate a reading; publish transitions before saving state, so a crash replays them."""
    state = await store.load(reading.patient_id, reading.metric)
    new_state, events = evaluate(state, reading)
    if events:
        await publisher.publish_alerts(events)
        for event in events:
            log.info(
                "alert_event_emitted",
                alert_id=event.alert_id,
                event_id=event.event_id,
                kind=event.kind.value,
                severity=event.severity.value,
                rule=event.rule.rule_id,
            )
    if new_state != state:
        await store.save(reading.patient_id, reading.metric, new_state)
