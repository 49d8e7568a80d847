"""Evaluate one reading against a patient's state: new state and alert events out, nothing else.

Event time only: a reading not newer than its metric's newest is ignored, so late or replayed
readings never move a state backwards. Events come only on transitions (opened, escalated,
resolved), each with a deterministic id.
"""

from __future__ import annotations

from collections.abc import Callable

from services.rules.domain.alerts import Evidence, last_reading, step_episode, trigger
from services.rules.domain.compiled import (
    LEVEL_OF_BAND,
    CompiledNews2,
    CompiledRule,
    band_for,
    compiled_rules,
    rule_for,
)
from services.rules.domain.eventtime import to_micros
from services.rules.domain.news2 import NEWS2_METRICS, Aggregate, aggregate
from services.rules.domain.ruleset import RuleSet
from services.rules.domain.state import (
    METRIC_INDEX,
    SEVERITIES,
    Episode,
    PatientState,
    TrackState,
)
from services.rules.domain.thresholds import PatientThresholds
from services.rules.domain.tracks import Runs, advance, decide, has_cleared, held_level
from services.rules.errors import RulesError
from shared.events import AlertEvent, AlertKind, Reading, Severity, TriggerReading
from shared.vitals import Metric

_NEWS2_INDEXED = tuple((metric, METRIC_INDEX[metric]) for metric in NEWS2_METRICS)
_NEWS2_SET = frozenset(NEWS2_METRICS)


class UnsupportedReadingError(RulesError):
    """A reading the rules cannot judge; dead-letter it with `reason`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def classify(
    metric: Metric, value: float, *, rules: RuleSet, overrides: PatientThresholds | None = None
) -> Severity:
    """Return the band a single value falls in, before any persistence rule."""
    rule = rule_for(rules, metric, overrides)
    if rule is None:
        raise UnsupportedReadingError("no_rule", f"no rule for {metric.value}")
    return SEVERITIES[LEVEL_OF_BAND[rule.band_of(value)]]


def evaluate(
    state: PatientState | None,
    reading: Reading,
    *,
    rules: RuleSet,
    overrides: PatientThresholds | None = None,
) -> tuple[PatientState, list[AlertEvent]]:
    """Apply a reading to the patient's state; return the new state and any transitions."""
    rule = _rule_or_raise(reading, rules, overrides)
    if state is None:
        state = PatientState(reading.patient_id)
    t = to_micros(reading.measured_at)
    index = METRIC_INDEX[reading.metric]
    prev = state.tracks[index]
    if prev is not None and t <= prev.last_us:
        return state, []
    patient = state.patient_id
    events: list[AlertEvent] = []
    track = _step_metric(prev, reading, t=t, rule=rule, patient_id=patient, events=events)
    tracks = (*state.tracks[:index], track, *state.tracks[index + 1 :])
    news2 = state.news2
    news2_rule = compiled_rules(rules).news2
    if news2_rule is not None and reading.metric in _NEWS2_SET:
        news2 = _step_news2(
            news2, tracks, reading, t=t, rule=news2_rule, patient_id=patient, events=events
        )
    gap = state.gap
    if gap is not None and not any(x is not None and x.silent for x in (*tracks, news2)):
        gap, resumed = _resolve_gap(gap, reading, patient)
        events.insert(0, resumed)
    return PatientState(patient, tracks, news2, gap), events


def _rule_or_raise(
    reading: Reading, rules: RuleSet, overrides: PatientThresholds | None
) -> CompiledRule:
    rule = rule_for(rules, reading.metric, overrides)
    if rule is None:
        raise UnsupportedReadingError(
            "no_rule", f"rule set {rules.version} has no rule for {reading.metric.value}"
        )
    if reading.unit != rule.unit:
        raise UnsupportedReadingError(
            "unit_mismatch",
            f"{reading.metric.value} in {reading.unit!r}; the rule expects {rule.unit!r}",
        )
    return rule


def _step_metric(
    prev: TrackState | None,
    reading: Reading,
    *,
    t: int,
    rule: CompiledRule,
    patient_id: str,
    events: list[AlertEvent],
) -> TrackState:
    runs, episode = _progress(
        prev,
        reading,
        band=rule.band_of(reading.value),
        clear=rule.is_clear(reading.value),
        rule=rule,
        t=t,
        patient_id=patient_id,
        events=events,
        evidence=lambda: ((trigger(reading),), None),
    )
    return TrackState(t, reading.value, reading.reading_id, *runs, False, episode)


def _step_news2(
    prev: TrackState | None,
    tracks: tuple[TrackState | None, ...],
    reading: Reading,
    *,
    t: int,
    rule: CompiledNews2,
    patient_id: str,
    events: list[AlertEvent],
) -> TrackState | None:
    if prev is not None and t < prev.last_us:
        return prev  # an older vital of a set already scored; the next score includes it
    present = [
        (metric, track)
        for metric, i in _NEWS2_INDEXED
        if (track := tracks[i]) is not None and t - track.last_us <= rule.window_us
    ]
    if len(present) < rule.min_parameters:
        return prev  # too few vitals to score: not a reason to call anything green
    agg = aggregate((metric, track.value) for metric, track in present)
    runs, episode = _progress(
        prev,
        reading,
        band=rule.band_of(agg.total, agg.any_three),
        clear=rule.is_clear(agg.total, agg.any_three),
        rule=rule,
        t=t,
        patient_id=patient_id,
        events=events,
        evidence=lambda: (_contributors(present, agg, reading), agg.reason()),
    )
    return TrackState(t, float(agg.total), "", *runs, False, episode)


def _progress(
    prev: TrackState | None,
    reading: Reading,
    *,
    band: int,
    clear: bool,
    rule: CompiledRule | CompiledNews2,
    t: int,
    patient_id: str,
    events: list[AlertEvent],
    evidence: Callable[[], Evidence],
) -> tuple[Runs, Episode | None]:
    """Advance a track with a sample's band; open, escalate or resolve the track's episode."""
    policy = rule.policy
    runs = advance(prev, t=t, level=LEVEL_OF_BAND[band], clear=clear, policy=policy)
    episode = prev.episode if prev is not None else None
    held = held_level(runs, t=t, policy=policy)
    kind, severity = decide(episode, held=held, cleared=has_cleared(runs, t=t, policy=policy))
    if kind is None:
        return runs, episode
    episode, event = step_episode(
        episode,
        kind=kind,
        severity=severity,
        rule=rule.refs[band_for(severity, band) if severity else 0],
        patient_id=patient_id,
        at=reading.measured_at,
        cause=reading.reading_id,
        evidence=evidence,
    )
    events.append(event)
    return runs, episode


def _contributors(
    present: list[tuple[Metric, TrackState]], agg: Aggregate, reading: Reading
) -> tuple[TriggerReading, ...]:
    """Scoring parameters in chart order, then the reading that triggered the score (last)."""
    scored = zip(present, agg.scores, strict=True)
    others = [last_reading(m, track) for (m, track), (_, s) in scored if s and m != reading.metric]
    return (*others, trigger(reading))


def _resolve_gap(gap: Episode, reading: Reading, patient_id: str) -> tuple[None, AlertEvent]:
    _, event = step_episode(
        gap,
        kind=AlertKind.RESOLVED,
        severity=0,
        rule=gap.rule,
        patient_id=patient_id,
        at=reading.measured_at,
        cause=reading.reading_id,
        evidence=lambda: ((trigger(reading),), "data_resumed"),
    )
    return None, event
