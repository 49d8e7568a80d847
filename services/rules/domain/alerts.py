"""Alert events with deterministic ids: the same inputs always give byte-identical events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from services.rules.domain.eventtime import from_micros
from services.rules.domain.state import SEVERITIES, Episode, TrackState
from shared.events import AlertEvent, AlertKind, Reading, RuleRef, TriggerReading
from shared.ids import derive_id
from shared.vitals import CATALOG, Metric


def trigger(reading: Reading) -> TriggerReading:
    """Return the alert's view of a reading."""
    return TriggerReading(
        reading_id=reading.reading_id,
        metric=reading.metric,
        value=reading.value,
        unit=reading.unit,
        measured_at=reading.measured_at,
    )


def last_reading(metric: Metric, track: TrackState) -> TriggerReading:
    """Return the newest reading a track remembers, as an alert carries it."""
    return TriggerReading(
        reading_id=track.reading_id,
        metric=metric,
        value=track.value,
        unit=CATALOG[metric].unit,
        measured_at=from_micros(track.last_us),
    )


def alert_id(patient_id: str, rule: RuleRef, started_at: datetime) -> str:
    """Return the id of the episode a rule opened for a patient at an event time."""
    return derive_id("alert", patient_id, rule.rule_id, rule.version, started_at.isoformat())


def alert_event(
    *,
    patient_id: str,
    episode_id: str,
    kind: AlertKind,
    severity: int,
    previous: int,
    rule: RuleRef,
    readings: tuple[TriggerReading, ...],
    at: datetime,
    cause: str,
    reason: str | None = None,
) -> AlertEvent:
    """Build an alert event; its id covers the episode, step, severity and cause."""
    level = SEVERITIES[severity]
    return AlertEvent(
        event_id=derive_id("alert-event", episode_id, kind.value, level.value, cause),
        alert_id=episode_id,
        patient_id=patient_id,
        kind=kind,
        severity=level,
        previous_severity=SEVERITIES[previous],
        rule=rule,
        readings=readings,
        reason=reason,
        occurred_at=at,
    )


# What an event shows for itself: the readings behind it and, when they do not say it all, a reason.
Evidence = tuple[tuple[TriggerReading, ...], str | None]


def step_episode(
    episode: Episode | None,
    *,
    kind: AlertKind,
    severity: int,
    rule: RuleRef,
    patient_id: str,
    at: datetime,
    cause: str,
    evidence: Callable[[], Evidence],
) -> tuple[Episode | None, AlertEvent]:
    """Open, escalate or resolve an episode; return it and the event that says so.

    `evidence` is called only here, so the hot path never builds readings it does not publish.
    """
    previous = episode.severity if episode is not None else 0
    if kind is AlertKind.RESOLVED and episode is not None:
        new, rule, episode_id = None, episode.rule, episode.alert_id
    else:
        episode_id = episode.alert_id if episode is not None else alert_id(patient_id, rule, at)
        new = Episode(episode_id, severity, rule)
    readings, reason = evidence()
    event = alert_event(
        patient_id=patient_id,
        episode_id=episode_id,
        kind=kind,
        severity=severity,
        previous=previous,
        rule=rule,
        readings=readings,
        at=at,
        cause=cause,
        reason=reason,
    )
    return new, event
