"""Skeleton rule: heart rate > 120 /min is red; events only on transitions, in event time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.rules.domain import MetricState, evaluate
from shared.events import AlertEvent, AlertKind, Reading, Severity
from shared.ids import derive_id
from shared.vitals import CATALOG, Metric

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def reading(value: float, second: int, metric: Metric = Metric.HEART_RATE) -> Reading:
    at = T0 + timedelta(seconds=second)
    return Reading(
        reading_id=derive_id("r", str(second), str(value)),
        patient_id="pt-1",
        source="t",
        metric=metric,
        value=value,
        unit=CATALOG[metric].unit,
        code=CATALOG[metric].loinc,
        measured_at=at,
        received_at=at,
    )


def run(*readings: Reading) -> list[AlertEvent]:
    state: MetricState | None = None
    events: list[AlertEvent] = []
    for r in readings:
        state, new = evaluate(state, r)
        events += new
    return events


@pytest.mark.parametrize(
    ("values", "kinds"),
    [
        ([80, 90, 100], []),
        ([120], []),  # the threshold is strictly above 120
        ([121], [AlertKind.OPENED]),
        ([130, 140, 150], [AlertKind.OPENED]),  # no repeats while red
        ([130, 80], [AlertKind.OPENED, AlertKind.RESOLVED]),
        ([130, 80, 80, 130], [AlertKind.OPENED, AlertKind.RESOLVED, AlertKind.OPENED]),
    ],
)
def test_events_only_on_transitions(values: list[float], kinds: list[AlertKind]) -> None:
    events = run(*(reading(v, i) for i, v in enumerate(values)))
    assert [e.kind for e in events] == kinds


def test_an_episode_keeps_its_alert_id_and_a_new_episode_gets_a_new_one() -> None:
    opened, resolved, reopened = run(reading(130, 0), reading(80, 1), reading(130, 2))
    assert opened.alert_id == resolved.alert_id != reopened.alert_id
    assert (opened.severity, opened.previous_severity) == (Severity.RED, Severity.GREEN)
    assert (resolved.severity, resolved.previous_severity) == (Severity.GREEN, Severity.RED)
    assert len({opened.event_id, resolved.event_id, reopened.event_id}) == 3


def test_a_late_reading_never_flips_the_state_backwards() -> None:
    events = run(reading(130, 10), reading(80, 5))
    assert [e.kind for e in events] == [AlertKind.OPENED]


def test_replaying_the_same_readings_yields_byte_identical_events() -> None:
    readings = [reading(130, 0), reading(80, 1)]
    first = [e.model_dump_json() for e in run(*readings)]
    assert first == [e.model_dump_json() for e in run(*readings)]


def test_other_metrics_do_not_trigger_the_heart_rate_rule() -> None:
    assert run(reading(130, 0, Metric.RESPIRATORY_RATE)) == []


def test_the_alert_carries_rule_and_reading() -> None:
    (event,) = run(reading(130, 0))
    assert event.rule.rule_id == "heart_rate_high" and event.rule.threshold == "> 120 /min"
    assert event.readings[0].value == 130 and event.occurred_at == T0
