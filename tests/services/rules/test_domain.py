"""Rules engine: sustained bands, episodes, hysteresis, event time and deterministic events.

Uses the shipped rule file, so these tests also pin its persistence and hysteresis defaults.
The helpers here are shared by the other test_domain_* modules.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from services.rules.domain import (
    DEFAULT_RULES_FILE,
    PatientState,
    PatientThresholds,
    RuleSet,
    UnsupportedReadingError,
    evaluate,
    load_rule_set,
    parse_rule_set,
)
from shared.events import AlertEvent, AlertKind, Reading, Severity
from shared.ids import derive_id
from shared.vitals import CATALOG, Metric

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RULES = load_rule_set()
RULE_DATA: dict[str, Any] = yaml.safe_load(DEFAULT_RULES_FILE.read_text(encoding="utf-8"))
HR = Metric.HEART_RATE
OPENED, ESCALATED, RESOLVED = AlertKind.OPENED, AlertKind.ESCALATED, AlertKind.RESOLVED
GREEN, YELLOW, RED = Severity.GREEN, Severity.YELLOW, Severity.RED


def rule_data(**changes: Any) -> dict[str, Any]:
    """The default rule file's data with dotted-path changes, e.g. {'rules.spo2.red.above': 1}."""
    data = copy.deepcopy(RULE_DATA)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return data


def rules_with(**changes: Any) -> RuleSet:
    """A valid variant of the default rule set."""
    return parse_rule_set(rule_data(**changes))


def reading(
    value: float,
    second: float,
    metric: Metric = HR,
    *,
    patient: str = "pt-1",
    unit: str | None = None,
) -> Reading:
    """A reading `second` seconds after T0."""
    at = T0 + timedelta(seconds=second)
    return Reading(
        reading_id=derive_id("reading", patient, metric.value, str(second), str(value)),
        patient_id=patient,
        source="test",
        metric=metric,
        value=value,
        unit=unit or CATALOG[metric].unit,
        code=CATALOG[metric].loinc,
        measured_at=at,
        received_at=at,
    )


def series(*samples: tuple[float, float], metric: Metric = HR) -> list[Reading]:
    """Readings from (second, value) pairs."""
    return [reading(value, second, metric) for second, value in samples]


def run(
    readings: Iterable[Reading],
    *,
    rules: RuleSet = RULES,
    overrides: PatientThresholds | None = None,
    state: PatientState | None = None,
) -> tuple[PatientState | None, list[AlertEvent]]:
    """Evaluate readings in order; return the final state and every event."""
    events: list[AlertEvent] = []
    for r in readings:
        state, new = evaluate(state, r, rules=rules, overrides=overrides)
        events += new
    return state, events


def steps(events: Iterable[AlertEvent]) -> list[tuple[AlertKind, Severity]]:
    return [(e.kind, e.severity) for e in events]


def every(seconds: float, *values: float, start: float = 0) -> list[tuple[float, float]]:
    """(second, value) pairs `seconds` apart."""
    return [(start + i * seconds, v) for i, v in enumerate(values)]


# Heart rate: red > 120 must hold for >= 3 consecutive samples spanning >= 60 s (yellow likewise).
@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        pytest.param(every(30, 80, 150, 80, 80), [], id="lone spike pages nobody"),
        pytest.param(every(30, 150, 150), [], id="two samples are not enough"),
        pytest.param(every(20, 150, 150, 150), [], id="three samples over 40 s are not enough"),
        pytest.param(every(30, 150, 150, 150), [(OPENED, RED)], id="3 samples over 60 s"),
        pytest.param(every(30, 150, 150, 100, 150, 150), [], id="a normal sample restarts"),
        pytest.param(every(30, 110, 110, 110), [(OPENED, YELLOW)], id="yellow sustained"),
        pytest.param(every(30, 45, 45, 45), [(OPENED, YELLOW)], id="low yellow sustained"),
        pytest.param(every(30, 35, 35, 35), [(OPENED, RED)], id="low red sustained"),
        pytest.param(every(30, 110, 130, 150), [(OPENED, YELLOW)], id="red not yet sustained"),
        pytest.param(every(30, 150, 150, 150, 150, 150), [(OPENED, RED)], id="no repeats"),
        pytest.param(every(1000, 150, 150, 150), [(OPENED, RED)], id="sparse but consecutive"),
        pytest.param(every(2000, 150, 150, 150), [], id="a data gap restarts the count"),
    ],
)
def test_a_band_holds_only_once_sustained(
    samples: list[tuple[float, float]], expected: list[tuple[AlertKind, Severity]]
) -> None:
    _, events = run(series(*samples))
    assert steps(events) == expected


def test_the_demo_episode_opens_red_on_the_third_sample() -> None:
    readings = series(*every(30, 150, 150, 150, 150, 150))
    _, events = run(readings)
    (opened,) = events
    assert opened.readings[0].reading_id == readings[2].reading_id
    assert opened.occurred_at == T0 + timedelta(seconds=60)


def test_yellow_to_red_escalates_the_same_episode() -> None:
    _, events = run(series(*every(30, 110, 110, 110, 150, 150, 150)))
    opened, escalated = events
    assert steps(events) == [(OPENED, YELLOW), (ESCALATED, RED)]
    assert escalated.alert_id == opened.alert_id and escalated.event_id != opened.event_id
    assert escalated.previous_severity is YELLOW
    assert (opened.rule.threshold, escalated.rule.threshold) == ("> 100 /min", "> 120 /min")


def test_a_red_episode_stays_red_while_values_are_only_yellow() -> None:
    _, events = run(series(*every(30, 150, 150, 150, 110, 110, 110, 110, 150, 150, 150)))
    assert steps(events) == [(OPENED, RED)]


RED_EPISODE = every(30, 150, 150, 150)  # opens red at 60 s


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        pytest.param(every(60, 98, 98, 98, 98, 98, 98, 98, start=90), [], id="inside the margin"),
        pytest.param(every(150, 90, 90, 90, start=90), [RESOLVED], id="clear for 300 s"),
        pytest.param(every(100, 90, 90, 90, start=90), [], id="clear for 200 s only"),
        pytest.param(every(300, 90, 90, start=90), [], id="two clear samples only"),
        pytest.param(
            every(100, 90, 90, 97, 90, 90, 90, start=90), [], id="a dip restarts clearing"
        ),
        pytest.param(
            every(100, 90, 90, 97, 90, 90, 90, 90, start=90), [RESOLVED], id="then clears"
        ),
        pytest.param(every(150, 60, 55, 60, start=90), [RESOLVED], id="55 is clear of 50 + 5"),
        pytest.param(every(150, 60, 54, 60, 60, start=90), [], id="54 is within the margin"),
    ],
)
def test_an_episode_resolves_only_after_staying_clear(
    after: list[tuple[float, float]], expected: list[AlertKind]
) -> None:
    _, events = run(series(*RED_EPISODE, *after))
    assert [e.kind for e in events[1:]] == expected


def test_resolving_says_green_and_keeps_the_episode_id() -> None:
    _, events = run(series(*RED_EPISODE, *every(150, 90, 90, 90, start=90)))
    opened, resolved = events
    assert resolved.alert_id == opened.alert_id
    assert (resolved.severity, resolved.previous_severity) == (GREEN, RED)
    assert resolved.rule == opened.rule


def test_a_new_episode_after_resolve_gets_a_new_id() -> None:
    clear = every(150, 90, 90, 90, start=90)
    again = every(30, 150, 150, 150, start=500)
    _, events = run(series(*RED_EPISODE, *clear, *again))
    assert steps(events) == [(OPENED, RED), (RESOLVED, GREEN), (OPENED, RED)]
    assert events[0].alert_id == events[1].alert_id != events[2].alert_id
    assert len({e.event_id for e in events}) == 3


@pytest.mark.parametrize(
    "late",
    [
        pytest.param(series(*every(1, 90, 90, 90, start=10)), id="older normal readings"),
        pytest.param(series((60, 70)), id="same event time as the newest"),
    ],
)
def test_late_or_out_of_order_readings_never_flip_the_state(late: list[Reading]) -> None:
    state, events = run(series(*every(30, 150, 150, 150)))
    _, more = run([*late, *series(*every(150, 90, 90, 90, start=90))], state=state)
    assert (steps(events), [e.kind for e in more]) == ([(OPENED, RED)], [RESOLVED])
    unchanged, none = run(late, state=state)
    assert unchanged == state and none == []


def test_an_out_of_order_reading_does_not_count_towards_persistence() -> None:
    _, events = run(series((0, 150), (60, 150), (30, 150)))
    assert events == []


def test_metrics_are_independent() -> None:
    readings = [*series(*every(30, 150, 150)), *series(*every(30, 80, 80, 80), metric=Metric.SPO2)]
    _, events = run(readings)
    assert steps(events) == [(OPENED, RED)]
    assert events[0].rule.rule_id == "spo2" and events[0].rule.threshold == "≤ 91 %"


def test_replaying_the_same_readings_yields_byte_identical_events_and_state() -> None:
    readings = series(*every(30, 110, 110, 110, 150, 150, 150), *every(150, 90, 90, 90, start=200))
    first_state, first = run(readings)
    again_state, again = run(readings)
    assert [e.model_dump_json() for e in first] == [e.model_dump_json() for e in again]
    assert first_state is not None and again_state is not None
    assert first_state.to_json() == again_state.to_json()
    assert len(first) == 3


def test_the_alert_names_rule_version_threshold_and_reading() -> None:
    readings = series(*every(30, 150, 150, 150))
    _, (event,) = run(readings)
    assert event.rule.rule_id == "heart_rate" and event.rule.version == RULES.version
    assert event.rule.threshold == "> 120 /min" and "Apple Watch" in event.rule.description
    assert event.readings[0].value == 150 and event.readings[0].unit == "/min"
    assert event.alert_id == derive_id(
        "alert", "pt-1", "heart_rate", RULES.version, event.occurred_at.isoformat()
    )
    assert event.reason is None and event.patient_id == "pt-1"


def test_patients_do_not_share_state() -> None:
    one, _ = run(series(*every(30, 150, 150, 150)))
    other, events = run([reading(150, 90, patient="pt-2")])
    assert events == [] and other is not None and other.patient_id == "pt-2" and one != other


@pytest.mark.parametrize(
    ("rules", "r", "reason"),
    [
        pytest.param(RULES, reading(98, 0, unit="bpm"), "unit_mismatch", id="not canonical"),
        pytest.param(
            rules_with(**{"rules.blood_glucose": None}),
            reading(100, 0, Metric.BLOOD_GLUCOSE),
            "no_rule",
            id="no rule for the metric",
        ),
    ],
)
def test_readings_the_rules_cannot_judge_are_refused(
    rules: RuleSet, r: Reading, reason: str
) -> None:
    with pytest.raises(UnsupportedReadingError) as caught:
        evaluate(None, r, rules=rules)
    assert caught.value.reason == reason and r.metric.value in str(caught.value)
