"""Data gaps raise a technical yellow, never a silent green; consent revocation closes episodes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.rules.domain import PatientState, check_gaps, close_on_consent_revoked
from shared.events import AlertEvent
from shared.vitals import Metric
from tests.services.rules.test_domain import (
    OPENED,
    RED,
    RESOLVED,
    RULES,
    T0,
    YELLOW,
    every,
    reading,
    rules_with,
    run,
    series,
    steps,
)
from tests.services.rules.test_domain_news2 import vital_set

LAST = 60  # the red HR episode's last reading, in seconds after T0


def red_hr() -> PatientState:
    state, events = run(series(*every(30, 150, 150, 150)))
    assert steps(events) == [(OPENED, RED)] and state is not None
    return state


def check(state: PatientState, after_last: float) -> tuple[PatientState, list[AlertEvent]]:
    return check_gaps(state, now=T0 + timedelta(seconds=LAST + after_last), rules=RULES)


@pytest.mark.parametrize(("silent_for", "alerts"), [(0, 0), (1799, 0), (1800, 1), (86400, 1)])
def test_silence_while_an_episode_is_open_raises_a_technical_yellow(
    silent_for: float, alerts: int
) -> None:
    _, events = check(red_hr(), silent_for)
    assert len(events) == alerts


def test_the_no_data_alert_is_deterministic_whenever_it_is_checked() -> None:
    (early,) = check(red_hr(), 1800)[1]
    (late,) = check(red_hr(), 7200)[1]
    assert early.model_dump_json() == late.model_dump_json()
    assert (early.kind, early.severity, early.reason) == (OPENED, YELLOW, "no_data")
    assert early.rule.rule_id == "data_gap" and "heart_rate" in early.rule.threshold
    assert early.occurred_at == T0 + timedelta(seconds=LAST + 1800)
    assert [r.value for r in early.readings] == [150]  # the last reading before the silence


def test_the_no_data_alert_is_raised_once() -> None:
    state, first = check(red_hr(), 1800)
    again, second = check(state, 3600)
    assert len(first) == 1 and second == [] and again == state


def test_a_quiet_patient_without_an_open_episode_raises_nothing() -> None:
    state, _ = run(series(*every(30, 80, 80, 80)))
    assert state is not None
    assert check(state, 86400) == (state, [])


def test_data_resuming_resolves_the_gap_but_not_the_clinical_episode() -> None:
    state, _ = check(red_hr(), 1800)
    gap = state.open_episodes()["data_gap"]
    after, events = run([reading(80, LAST + 2000)], state=state)
    (resolved,) = events
    assert (resolved.kind, resolved.alert_id, resolved.reason) == (
        RESOLVED,
        gap.alert_id,
        "data_resumed",
    )
    assert after is not None and set(after.open_episodes()) == {"heart_rate"}


def test_another_metric_sending_does_not_end_the_gap() -> None:
    state, _ = check(red_hr(), 1800)
    after, events = run([reading(97, LAST + 2000, Metric.SPO2)], state=state)
    assert events == [] and after is not None and "data_gap" in after.open_episodes()


def test_the_data_gap_is_per_rule() -> None:
    readings = series(*every(300, 185, 185), metric=Metric.SYSTOLIC_BP)  # cuff: 12 h gap
    state, events = run(readings)
    assert steps(events) == [(OPENED, RED)] and state is not None
    now = T0 + timedelta(seconds=300)
    assert check_gaps(state, now=now + timedelta(hours=11), rules=RULES)[1] == []
    assert len(check_gaps(state, now=now + timedelta(hours=12), rules=RULES)[1]) == 1


def test_a_silent_news2_episode_raises_the_gap_too() -> None:
    rules = rules_with(**{"rules.spo2.red.at_or_below": 50, "rules.spo2.yellow.at_or_below": 60})
    sets = [r for t in (0, 120) for r in vital_set(t, spo2=91)]
    state, events = run(sets, rules=rules)
    assert [e.rule.rule_id for e in events] == ["news2"] and state is not None
    _, (gap,) = check_gaps(state, now=T0 + timedelta(seconds=124 + 1800), rules=rules)
    assert "NEWS2" in gap.rule.threshold and len(gap.readings) == 1


def test_consent_revocation_resolves_every_open_episode() -> None:
    state, _ = check(red_hr(), 1800)
    at = T0 + timedelta(hours=2)
    gone, events = close_on_consent_revoked(state, patient_id="pt-1", cause_id="c-9", at=at)
    assert gone is None
    assert [(e.kind, e.reason, e.readings) for e in events] == [
        (RESOLVED, "consent_revoked", ())
    ] * 2
    assert {e.alert_id for e in events} == {e.alert_id for e in state.open_episodes().values()}
    assert all(e.occurred_at == at and e.previous_severity in (RED, YELLOW) for e in events)
    again = close_on_consent_revoked(state, patient_id="pt-1", cause_id="c-9", at=at)[1]
    assert [e.event_id for e in again] == [e.event_id for e in events]


def test_consent_revocation_without_state_emits_nothing() -> None:
    assert close_on_consent_revoked(None, patient_id="pt-1", cause_id="c", at=T0) == (None, [])
