"""Rules event handlers: readings in batches, consent changes, gap checks, erasure, export.

All mutation of a patient's state goes through one lock, so the consumer, the gap checker and the
consent listener never interleave on a patient. Order within a batch: evaluate in memory, publish
every alert event (await the broker's acks), then save the changed states; the consumer commits
offsets only after that, so a crash at any point replays into the same deterministic events.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from services.rules.domain import (
    PatientState,
    PatientThresholds,
    RuleSet,
    UnsupportedReadingError,
    check_gaps,
    close_on_consent_revoked,
    evaluate,
)
from services.rules.ports import AlertPublisher, ConsentView, StateStore
from shared.consumer import MessageContext, Rejection
from shared.events import AlertEvent, ConsentChanged, Purpose, Reading

log = structlog.get_logger(__name__)


@dataclass
class RulesEngine:
    """The rules service's moving parts, shared by every handler."""

    rules: RuleSet
    store: StateStore
    publisher: AlertPublisher
    consent: ConsentView
    thresholds: dict[str, PatientThresholds] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


async def on_readings(
    batch: list[tuple[Reading, MessageContext]], *, engine: RulesEngine
) -> list[Rejection]:
    """Evaluate a poll batch; return readings to dead-letter (no rule, wrong unit)."""
    async with engine.lock:
        changed: dict[str, tuple[int, PatientState]] = {}
        events: list[AlertEvent] = []
        rejections: list[Rejection] = []
        allowed = [
            (reading, ctx)
            for reading, ctx in batch
            if engine.consent.allows(reading.patient_id, Purpose.MONITORING)
        ]
        stored = await engine.store.load_many({reading.patient_id for reading, _ in allowed})
        for reading, ctx in allowed:
            patient = reading.patient_id
            state = changed[patient][1] if patient in changed else stored.get(patient)
            try:
                new_state, new_events = evaluate(
                    state, reading, rules=engine.rules, overrides=engine.thresholds.get(patient)
                )
            except UnsupportedReadingError as exc:
                rejections.append(Rejection(ctx, exc.reason, exc.detail))
                continue
            if new_state is not state:
                changed[patient] = (ctx.partition, new_state)
            events += new_events
        await _emit(engine, events)
        await engine.store.save_many((p, part, s) for p, (part, s) in changed.items())
    return rejections


async def check_data_gaps(engine: RulesEngine, *, now: datetime) -> int:
    """Raise technical 'no data' alerts for silent patients this instance owns; return how many."""
    async with engine.lock:
        changed: list[tuple[str, int, PatientState]] = []
        events: list[AlertEvent] = []
        for patient, state in engine.store.cached().items():
            new_state, new_events = check_gaps(state, now=now, rules=engine.rules)
            if new_state is not state:
                partition = engine.store.partition_of(patient)
                changed.append((patient, partition if partition is not None else 0, new_state))
            events += new_events
        await _emit(engine, events)
        await engine.store.save_many(changed)
    return len(events)


async def on_consent_changed(event: ConsentChanged, *, engine: RulesEngine) -> None:
    """When monitoring consent ends, resolve the patient's open episodes and forget the state."""
    if event.purpose is not Purpose.MONITORING or event.purpose_active:
        return
    async with engine.lock:
        state = await engine.store.load(event.patient_id)
        _, events = close_on_consent_revoked(
            state, patient_id=event.patient_id, cause_id=event.event_id, at=event.changed_at
        )
        await _emit(engine, events)
        await engine.store.forget(event.patient_id)
    log.info("episodes_closed_consent_revoked", closed=len(events))


async def erase_patient(patient_id: str, *, engine: RulesEngine) -> str:
    """Erasure: drop the patient's rule state (per-patient thresholds are erased by the API)."""
    async with engine.lock:
        removed = await engine.store.forget(patient_id)
    return f"deleted {removed} rule state(s)"


async def export_patient(patient_id: str, *, engine: RulesEngine) -> dict[str, object]:
    """What the rules service holds about a patient: state, open episodes, own thresholds."""
    state = await engine.store.load(patient_id)
    thresholds = engine.thresholds.get(patient_id)
    return {
        "rule_state": state.describe() if state is not None else {},
        "thresholds": thresholds.model_dump(mode="json") if thresholds is not None else None,
    }


async def _emit(engine: RulesEngine, events: list[AlertEvent]) -> None:
    if not events:
        return
    await engine.publisher.publish_alerts(events)
    for event in events:
        log.info(
            "alert_event_emitted",
            alert_id=event.alert_id,
            event_id=event.event_id,
            kind=event.kind.value,
            severity=event.severity.value,
            rule=event.rule.rule_id,
        )
