"""Rule state survives a crash: a compact versioned JSON round trip resumes exactly where it was."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from services.rules.domain import STATE_FORMAT, PatientState, StateFormatError, check_gaps
from shared.events import Reading
from shared.vitals import Metric
from tests.services.rules.test_domain import RULES, T0, every, reading, run, series
from tests.services.rules.test_domain_news2 import vital_set

SICK = {"respiratory_rate": 26, "spo2": 93, "heart_rate": 135}


def busy_state() -> tuple[PatientState, list[Reading]]:
    """A patient with open metric, NEWS2 and data-gap episodes, runs in progress, and what follows."""
    before = [r for t in (0, 60, 120) for r in vital_set(t, **SICK)]
    state, events = run(before)
    assert state is not None and len(events) >= 3
    state, gap = check_gaps(state, now=T0 + timedelta(hours=1), rules=RULES)
    assert len(gap) == 1
    after = [
        *[r for t in range(4000, 4800, 120) for r in vital_set(t)],
        *series(*every(30, 200, 200, 200, start=5000), metric=Metric.BLOOD_GLUCOSE),
    ]
    return state, after


def test_the_round_trip_is_exact() -> None:
    state, _ = busy_state()
    assert set(state.open_episodes()) >= {
        "heart_rate",
        "spo2",
        "respiratory_rate",
        "news2",
        "data_gap",
    }
    assert PatientState.from_json(state.to_json()) == state


def test_resuming_from_stored_state_emits_what_an_uninterrupted_run_would() -> None:
    state, after = busy_state()
    _, uninterrupted = run(after, state=state)
    _, resumed = run(after, state=PatientState.from_json(state.to_json()))
    assert [e.model_dump_json() for e in resumed] == [e.model_dump_json() for e in uninterrupted]
    assert {e.kind.value for e in uninterrupted} == {"resolved"}


def test_the_json_is_versioned_and_compact() -> None:
    state, _ = run(series(*every(30, 80, 80, 80)))
    assert state is not None
    document = json.loads(state.to_json())
    assert document["v"] == STATE_FORMAT and list(document["tracks"]) == ["heart_rate"]
    assert len(state.to_json()) < 200


@pytest.mark.parametrize(
    "text",
    [
        '{"v":99,"patient":"pt-1","tracks":{},"news2":null,"gap":null}',
        '{"v":1,"patient":"pt-1","tracks":{"pulse":[]},"news2":null,"gap":null}',
        '{"v":1,"patient":"pt-1","tracks":{"heart_rate":[1,2]},"news2":null,"gap":null}',
        '{"v":1,"patient":"pt-1","tracks":{"heart_rate":["1",80,"r",0,0,0,0,0,0,0,null]},"news2":null,"gap":null}',
        '{"v":1,"patient":"pt-1","tracks":{},"news2":null,"gap":["a",7,"r","v","d","t"]}',
        "[]",
        "not json",
    ],
)  # fmt: skip
def test_an_unreadable_state_is_refused(text: str) -> None:
    with pytest.raises(StateFormatError):
        PatientState.from_json(text)


def test_describe_lists_what_is_held_for_an_export() -> None:
    state, _ = run([reading(150, t) for t in (0, 30, 60)])
    assert state is not None
    described = state.describe()
    assert described["tracks"] == {
        "heart_rate": {
            "last_measured_at": "2026-11-23T12:01:00+00:00",
            "last_value": 150.0,
            "last_reading_id": state.tracks[0].reading_id if state.tracks[0] else None,
            "no_data": False,
        }
    }
    assert list(described["open_episodes"]) == ["heart_rate"]
