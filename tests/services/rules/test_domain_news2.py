"""NEWS2: parameter scores per RCP Chart 1; the aggregate alert over vitals within a window."""

from __future__ import annotations

import pytest

from services.rules.domain import news2_score
from shared.events import AlertEvent, Reading
from shared.vitals import Metric
from tests.services.rules.test_domain import (
    ESCALATED,
    OPENED,
    RED,
    RESOLVED,
    YELLOW,
    reading,
    rules_with,
    run,
    steps,
)

M = Metric


@pytest.mark.parametrize(
    ("metric", "scores"),
    [
        (M.RESPIRATORY_RATE, {8: 3, 9: 1, 11: 1, 12: 0, 20: 0, 21: 2, 24: 2, 25: 3}),
        (M.SPO2, {91: 3, 92: 2, 93: 2, 94: 1, 95: 1, 96: 0, 100: 0}),
        (M.SYSTOLIC_BP, {90: 3, 91: 2, 100: 2, 101: 1, 110: 1, 111: 0, 219: 0, 220: 3}),
        (M.HEART_RATE, {40: 3, 41: 1, 50: 1, 51: 0, 90: 0, 91: 1, 110: 1, 111: 2, 130: 2, 131: 3}),
        (M.BODY_TEMPERATURE, {35.0: 3, 35.1: 1, 36.0: 1, 36.1: 0, 38.0: 0, 38.1: 1, 39.0: 1, 39.1: 2}),
    ],
)  # fmt: skip
def test_parameter_scores_follow_rcp_chart_1(metric: Metric, scores: dict[float, int]) -> None:
    assert {value: news2_score(metric, value) for value in scores} == scores


NORMAL = {
    M.RESPIRATORY_RATE: 16,
    M.SPO2: 97,
    M.SYSTOLIC_BP: 120,
    M.HEART_RATE: 80,
    M.BODY_TEMPERATURE: 37.0,
}


def vital_set(second: float, **values: float) -> list[Reading]:
    """One reading per NEWS2 parameter at `second`: normal unless given (by metric value)."""
    merged = {m: values.get(m.value, v) for m, v in NORMAL.items()}
    return [reading(value, second, metric) for metric, value in merged.items()]


def news2_events(*sets: list[Reading]) -> list[AlertEvent]:
    _, events = run([r for s in sets for r in s])
    return [e for e in events if e.rule.rule_id == "news2"]


# Sustain: 2 evaluations spanning >= 120 s; so a pattern seen in two sets 120 s apart.
@pytest.mark.parametrize(
    ("values", "expected", "threshold", "reason"),
    [
        pytest.param(
            {"heart_rate": 115, "respiratory_rate": 22, "body_temperature": 38.5},
            (OPENED, YELLOW),
            "aggregate ≥ 5",
            "NEWS2 5: respiratory_rate 2, heart_rate 2, body_temperature 1",
            id="aggregate 5",
        ),
        pytest.param(
            {"heart_rate": 115, "respiratory_rate": 22, "spo2": 94, "body_temperature": 38.5},
            (OPENED, YELLOW),
            "aggregate ≥ 5",
            "NEWS2 6: respiratory_rate 2, spo2 1, heart_rate 2, body_temperature 1",
            id="aggregate 6",
        ),
        pytest.param(
            {"spo2": 91},
            (OPENED, YELLOW),
            "any single parameter scoring 3",
            "NEWS2 3: spo2 3",
            id="single parameter 3",
        ),
        pytest.param(
            {"respiratory_rate": 26, "spo2": 93, "heart_rate": 115},
            (OPENED, RED),
            "aggregate ≥ 7",
            "NEWS2 7: respiratory_rate 3, spo2 2, heart_rate 2",
            id="aggregate 7",
        ),
    ],
)
def test_the_aggregate_alert_names_its_contributing_parameters(
    values: dict[str, float], expected: tuple[object, object], threshold: str, reason: str
) -> None:
    (event,) = news2_events(vital_set(0, **values), vital_set(120, **values))
    assert (event.kind, event.severity) == expected
    assert (event.rule.threshold, event.reason) == (threshold, reason)
    scoring = {m for m in M if m.value in values and news2_score(m, values[m.value])}
    assert {r.metric for r in event.readings} == scoring | {M.RESPIRATORY_RATE}
    assert event.readings[-1].metric is M.RESPIRATORY_RATE  # the reading that scored it, last


@pytest.mark.parametrize(
    ("sets", "why"),
    [
        ([vital_set(0, heart_rate=115, respiratory_rate=22)], "aggregate 4"),
        ([vital_set(0, heart_rate=115, respiratory_rate=22, body_temperature=38.5)], "one set"),
    ],
)
def test_below_threshold_or_not_sustained_pages_nobody(sets: list[list[Reading]], why: str) -> None:
    assert news2_events(*sets) == [], why


def test_too_few_vitals_in_the_window_are_not_scored() -> None:
    two = [reading(135, t) for t in (0, 120)] + [reading(90, t, M.SPO2) for t in (1, 121)]
    assert news2_events(two) == []


def test_vitals_outside_the_window_do_not_count() -> None:
    old = vital_set(0, respiratory_rate=26, spo2=93)
    hr = [reading(115, t) for t in (1000, 1060, 1120)]  # 1000 s later: RR and SpO2 are stale
    assert news2_events(old, hr) == []


def test_yellow_aggregate_escalates_to_red_in_the_same_episode() -> None:
    five = {"heart_rate": 115, "respiratory_rate": 22, "body_temperature": 38.5}
    seven = {**five, "spo2": 93}
    events = news2_events(
        *(vital_set(t, **five) for t in (0, 120)), *(vital_set(t, **seven) for t in (240, 360))
    )
    assert steps(events) == [(OPENED, YELLOW), (ESCALATED, RED)]
    assert events[0].alert_id == events[1].alert_id
    assert (
        events[1].reason == "NEWS2 7: respiratory_rate 2, spo2 2, heart_rate 2, body_temperature 1"
    )


def test_the_aggregate_resolves_after_staying_clear() -> None:
    seven = {"respiratory_rate": 26, "spo2": 93, "heart_rate": 115}
    sick = [vital_set(t, **seven) for t in (0, 120)]
    better = [vital_set(t, heart_rate=95) for t in range(240, 900, 120)]  # aggregate 1
    events = news2_events(*sick, *better)
    assert [e.kind for e in events] == [OPENED, RESOLVED]
    assert events[1].reason == "NEWS2 1: heart_rate 1"


def test_the_aggregate_can_be_switched_off() -> None:
    values = {"respiratory_rate": 26, "spo2": 93, "heart_rate": 115}
    readings = [r for t in (0, 120) for r in vital_set(t, **values)]
    _, events = run(readings, rules=rules_with(**{"news2.enabled": False}))
    assert all(e.rule.rule_id != "news2" for e in events)
