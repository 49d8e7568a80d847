"""Pure rule evaluation: per (patient, metric) episode state in, new state and alert events out.

Walking-skeleton rule set: one rule, heart rate > 120 /min is red, evaluated per sample.
The clinical rule set (sustained bands, hysteresis, NEWS2) replaces it in the rules-engine issue.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from shared.events import AlertEvent, AlertKind, Reading, RuleRef, Severity, TriggerReading
from shared.ids import derive_id
from shared.vitals import Metric

HEART_RATE_HIGH = RuleRef(
    rule_id="heart_rate_high",
    version="skeleton-1",
    description="Heart rate above 120 /min",
    threshold="> 120 /min",
)
HEART_RATE_RED_ABOVE = 120.0


@dataclass(frozen=True)
class Episode:
    """An open alert episode."""

    alert_id: str
    severity: Severity


@dataclass(frozen=True)
class MetricState:
    """What the engine remembers about one patient's metric."""

    last_measured_at: datetime
    episode: Episode | None = None


def classify(reading: Reading) -> Severity:
    """Return the severity a single reading indicates under the skeleton rule."""
    if reading.metric is Metric.HEART_RATE and reading.value > HEART_RATE_RED_ABOVE:
        return Severity.RED
    return Severity.GREEN


def evaluate(state: MetricState | None, reading: Reading) -> tuple[MetricState, list[AlertEvent]]:
    """Apply a reading to the state; emit events only on transitions.

    Event time rules: a reading older than the newest one seen never changes the state.
    """
    if state is not None and reading.measured_at <= state.last_measured_at:
        return state, []
    severity = classify(reading)
    episode = state.episode if state else None
    previous = episode.severity if episode else Severity.GREEN
    if severity == previous:
        return MetricState(reading.measured_at, episode), []
    if episode is None:
        alert_id = derive_id(
            "alert",
            reading.patient_id,
            HEART_RATE_HIGH.rule_id,
            HEART_RATE_HIGH.version,
            reading.measured_at.isoformat(),
        )
        new_episode: Episode | None = Episode(alert_id=alert_id, severity=severity)
        kind = AlertKind.OPENED
    elif severity is Severity.GREEN:
        new_episode, kind, alert_id = None, AlertKind.RESOLVED, episode.alert_id
    else:
        new_episode = replace(episode, severity=severity)
        kind, alert_id = AlertKind.ESCALATED, episode.alert_id
    event = AlertEvent(
        event_id=derive_id("alert-event", alert_id, kind.value, severity.value, reading.reading_id),
        alert_id=alert_id,
        patient_id=reading.patient_id,
        kind=kind,
        severity=severity,
        previous_severity=previous,
        rule=HEART_RATE_HIGH,
        readings=(
            TriggerReading(
                reading_id=reading.reading_id,
                metric=reading.metric,
                value=reading.value,
                unit=reading.unit,
                measured_at=reading.measured_at,
            ),
        ),
        occurred_at=reading.measured_at,
    )
    return MetricState(reading.measured_at, new_episode), [event]


def close_on_consent_revoked(
    state: MetricState | None, *, patient_id: str, metric: Metric, cause_id: str, at: datetime
) -> AlertEvent | None:
    """Resolve an open episode because monitoring consent was revoked (no reading behind it)."""
    if state is None or state.episode is None:
        return None
    episode = state.episode
    return AlertEvent(
        event_id=derive_id(
            "alert-event", episode.alert_id, "resolved", "consent_revoked", cause_id
        ),
        alert_id=episode.alert_id,
        patient_id=patient_id,
        kind=AlertKind.RESOLVED,
        severity=Severity.GREEN,
        previous_severity=episode.severity,
        rule=HEART_RATE_HIGH,
        readings=(),
        reason="consent_revoked",
        occurred_at=at,
    )
