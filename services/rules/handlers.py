"""Rules event handlers."""

from __future__ import annotations

import structlog

from services.rules.domain import close_on_consent_revoked, evaluate
from services.rules.ports import AlertPublisher, ConsentView, StateStore
from shared.consumer import MessageContext
from shared.events import ConsentChanged, Purpose, Reading

log = structlog.get_logger(__name__)


async def on_reading_received(
    reading: Reading,
    ctx: MessageContext,
    *,
    store: StateStore,
    publisher: AlertPublisher,
    consent: ConsentView,
) -> None:
    """Evaluate a reading; publish transitions before saving state, so a crash replays them."""
    if not consent.allows(reading.patient_id, Purpose.MONITORING):
        log.info("reading_skipped_no_consent", reading_id=reading.reading_id)
        return
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


async def on_consent_changed(
    event: ConsentChanged, *, store: StateStore, publisher: AlertPublisher
) -> None:
    """When monitoring consent ends, resolve the patient's open episodes as 'consent_revoked'."""
    if event.purpose is not Purpose.MONITORING or event.purpose_active:
        return
    states = await store.of_patient(event.patient_id)
    closing = [
        alert
        for metric, state in states.items()
        if (
            alert := close_on_consent_revoked(
                state,
                patient_id=event.patient_id,
                metric=metric,
                cause_id=event.event_id,
                at=event.changed_at,
            )
        )
    ]
    if closing:
        await publisher.publish_alerts(closing)
    removed = await store.forget(event.patient_id)
    log.info("episodes_closed_consent_revoked", closed=len(closing), states_removed=removed)


async def erase_patient(patient_id: str, *, store: StateStore) -> str:
    """Erasure: drop every rule state of the patient."""
    removed = await store.forget(patient_id)
    return f"deleted {removed} rule state(s)"


async def export_patient(patient_id: str, *, store: StateStore) -> dict[str, object]:
    """What the rules service holds about a patient: per-metric state and open episodes."""
    states = await store.of_patient(patient_id)
    return {
        "rule_state": {
            metric.value: {
                "last_measured_at": state.last_measured_at.isoformat(),
                "open_alert_id": state.episode.alert_id if state.episode else None,
                "severity": state.episode.severity.value if state.episode else "green",
            }
            for metric, state in states.items()
        }
    }
