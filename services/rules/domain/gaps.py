"""Data gaps and consent revocation: episodes that change without a reading behind them.

A patient whose signal stops while an episode is open gets a technical yellow ("no_data"), never
a silent green; it resolves when every silent signal with an open episode sends again. Checking is
driven by the caller's clock, but the event is not: its time is when the silence reached the limit.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from services.rules.domain.alerts import alert_event, last_reading, step_episode
from services.rules.domain.compiled import CompiledRules, compiled_rules
from services.rules.domain.eventtime import from_micros, to_micros
from services.rules.domain.news2 import NEWS2_METRICS
from services.rules.domain.ruleset import RuleSet
from services.rules.domain.state import METRICS, Episode, PatientState, TrackState, rule_ref
from shared.events import AlertEvent, AlertKind, TriggerReading

_NEWS2 = len(METRICS)  # the NEWS2 track's position among flagged signals
GAP_DESCRIPTION = (
    "No readings while an alert episode is open (technical alert, not a clinical state)"
)


def check_gaps(
    state: PatientState, *, now: datetime, rules: RuleSet
) -> tuple[PatientState, list[AlertEvent]]:
    """Flag signals silent past their data gap while an episode is open; open the no-data alert."""
    compiled = compiled_rules(rules)
    now_us = to_micros(now)
    tracks = list(state.tracks)
    flagged: list[tuple[int, int]] = []  # (deadline, position)
    for i, track in enumerate(state.tracks):
        deadline = _deadline(track, compiled.gap_us(METRICS[i]))
        if track is not None and deadline is not None and now_us >= deadline:
            tracks[i] = replace(track, silent=True)
            flagged.append((deadline, i))
    news2 = state.news2
    deadline = _deadline(news2, compiled.data_gap_us)
    if news2 is not None and deadline is not None and now_us >= deadline:
        news2 = replace(news2, silent=True)
        flagged.append((deadline, _NEWS2))
    if not flagged:
        return state, []
    gap, events = state.gap, []
    if gap is None:
        gap, opened = _open_gap(state, flagged, compiled)
        events.append(opened)
    return PatientState(state.patient_id, tuple(tracks), news2, gap), events


def _deadline(track: TrackState | None, gap_us: int) -> int | None:
    """Return when the track's silence becomes a gap, if it has an episode and is not flagged."""
    if track is None or track.episode is None or track.silent:
        return None
    return track.last_us + gap_us


def _open_gap(
    state: PatientState, flagged: list[tuple[int, int]], compiled: CompiledRules
) -> tuple[Episode | None, AlertEvent]:
    deadline, first = min(flagged)
    silent_for = deadline - _track_at(state, first).last_us
    name = METRICS[first].value if first != _NEWS2 else "NEWS2 vital"
    threshold = f"no {name} reading for ≥ {silent_for / 60e6:g} min while an episode is open"
    rule = rule_ref("data_gap", compiled.version, GAP_DESCRIPTION, threshold)
    gap, event = step_episode(
        None,
        kind=AlertKind.OPENED,
        severity=1,
        rule=rule,
        patient_id=state.patient_id,
        at=from_micros(deadline),
        cause="no_data",
        evidence=lambda: (_silent_readings(state, flagged), "no_data"),
    )
    return gap, event


def _track_at(state: PatientState, position: int) -> TrackState:
    track = state.news2 if position == _NEWS2 else state.tracks[position]
    assert track is not None  # only existing tracks are flagged
    return track


def _silent_readings(
    state: PatientState, flagged: list[tuple[int, int]]
) -> tuple[TriggerReading, ...]:
    """The last reading of each silent metric; for a silent NEWS2 alone, its newest vital."""
    positions = sorted(p for _, p in flagged if p != _NEWS2)
    found = [(METRICS[p], _track_at(state, p)) for p in positions]
    if not found:
        vitals = [(m, t) for m in NEWS2_METRICS if (t := state.track(m)) is not None]
        found = sorted(vitals, key=lambda mt: mt[1].last_us)[-1:]
    return tuple(last_reading(metric, track) for metric, track in found)


def close_on_consent_revoked(
    state: PatientState | None, *, patient_id: str, cause_id: str, at: datetime
) -> tuple[PatientState | None, list[AlertEvent]]:
    """Resolve every open episode as 'consent_revoked'; the state is then to be forgotten."""
    if state is None:
        return None, []
    events = [
        alert_event(
            patient_id=patient_id,
            episode_id=episode.alert_id,
            kind=AlertKind.RESOLVED,
            severity=0,
            previous=episode.severity,
            rule=episode.rule,
            readings=(),
            at=at,
            cause=cause_id,
            reason="consent_revoked",
        )
        for episode in state.open_episodes().values()
    ]
    return None, events
