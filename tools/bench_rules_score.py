"""Alert quality of the rules engine on synthetic patients, and of a naive threshold on the same data.

- The engine: `evaluate` with the default rule set, one state per patient, readings in event-time
  order; before each reading `check_gaps(now=its measured_at)`, which is what the service's
  periodic gap checker does in event time (the no-data alert is stamped when the silence reached
  its limit, not when it was noticed).
- Detected: a true event is detected when an `opened` or `escalated` event of the rule for its
  metric occurs within [event start, event end + 5 min]; the delay is that event's occurred_at
  minus the event start (event time).
- False alert: an opened episode (engine) or a rise from green (naive) whose opening does not lie
  within an injected event's span (ramps included, + 5 min) of the same metric, nor, for heart
  rate, within an exercise bout. Exercise alerts are counted apart (expected by the rule set, which
  has no activity gate). Attribution is by where the alert opened, not by overlap: an episode
  already open when an event began was not caused by it.
- Naive: every sample classified alone with the same red/yellow bands (`classify`); a sample in a
  band after a green one opens a naive alert; any rise (green->yellow, green->red, yellow->red) is
  a naive page.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from services.rules.domain import PatientState, RuleSet, check_gaps, classify, evaluate
from shared.events import AlertEvent, AlertKind, Reading, Severity
from shared.vitals import Metric
from tools.bench_rules_gen import EPOCH, TRUE_EVENTS, Kind, PatientData, Window

GRACE_S = 300.0
ALERTING = (AlertKind.OPENED, AlertKind.ESCALATED)
LEVEL = {Severity.GREEN: 0, Severity.YELLOW: 1, Severity.RED: 2}
SEVERITY_NAME = ("green", "yellow", "red")
TECHNICAL = "data_gap"


def seconds(at: datetime) -> float:
    """Event time as seconds since the synthetic epoch."""
    return (at - EPOCH).total_seconds()


@dataclass(frozen=True)
class Detection:
    """How one true event fared."""

    kind: Kind
    delay_s: float | None  # first qualifying alert event, any severity; None: missed
    red_delay_s: float | None  # first qualifying alert event at red
    miss: str = ""


@dataclass
class Quality:
    """Everything the alert-quality report needs, summed over patients."""

    patient_days: int = 0
    readings: Counter[str] = field(default_factory=Counter)
    windows: Counter[str] = field(default_factory=Counter)
    artifacts: int = 0
    detections: list[Detection] = field(default_factory=list)
    engine: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # rule, severity, cause
    naive: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    engine_pages: int = 0  # opened + escalated, clinical rules
    naive_pages: int = 0  # every rise in level
    exercise_engine: int = 0  # bouts with an engine alert
    exercise_naive: int = 0  # bouts with a naive alert


def run_engine(readings: list[Reading], rules: RuleSet) -> list[AlertEvent]:
    """Every alert event the engine emits for one patient's readings (gap checks included)."""
    state: PatientState | None = None
    events: list[AlertEvent] = []
    for r in readings:
        if state is not None:
            state, gap_events = check_gaps(state, now=r.measured_at, rules=rules)
            events += gap_events
        state, new = evaluate(state, r, rules=rules)
        events += new
    return events


def naive_rises(readings: list[Reading], rules: RuleSet) -> list[tuple[Metric, float, int, int]]:
    """(metric, time, level before, level after) of every sample above its predecessor's level."""
    previous: dict[Metric, int] = {}
    rises: list[tuple[Metric, float, int, int]] = []
    for r in readings:
        level = LEVEL[classify(r.metric, r.value, rules=rules)]
        before = previous.get(r.metric, 0)
        if level > before:
            rises.append((r.metric, seconds(r.measured_at), before, level))
        previous[r.metric] = level
    return rises


def cause(rule_id: str, opened: float, data: PatientData) -> str:
    """Why an alert opened: event, exercise, activity, artifact, after_dropout, technical, none.

    `artifact`: a motion artifact of the metric among its samples of the 5 min up to the opening;
    `after_dropout`: opened within 10 min after a dropout ended; `none`: baseline noise alone.
    """
    if rule_id == TECHNICAL:
        return "technical"
    for w in data.windows:
        inside = w.span_start <= opened <= w.span_end + GRACE_S
        if inside and w.kind in TRUE_EVENTS and TRUE_EVENTS[w.kind].value == rule_id:
            return "event"
        if inside and w.kind in (Kind.EXERCISE, Kind.ACTIVITY) and rule_id == "heart_rate":
            return w.kind.value
    if any(m.value == rule_id and opened - GRACE_S <= t <= opened + 1 for m, t in data.artifacts):
        return "artifact"
    if any(
        w.kind is Kind.DROPOUT and 0 <= opened - w.span_end <= 2 * GRACE_S for w in data.windows
    ):
        return "after_dropout"
    return "none"


def red_open_at(events: list[AlertEvent], rule_id: str, at: float) -> bool:
    """True when an episode of the rule was open at red at time `at`."""
    red: set[str] = set()
    for e in events:
        if seconds(e.occurred_at) >= at:
            break
        if e.rule.rule_id != rule_id:
            continue
        if e.kind is AlertKind.RESOLVED:
            red.discard(e.alert_id)
        elif e.severity is Severity.RED:
            red.add(e.alert_id)
    return bool(red)


def detect(w: Window, events: list[AlertEvent], readings: list[Reading]) -> Detection:
    """Score one true event against the engine's alert events."""
    metric = TRUE_EVENTS[w.kind]
    hits = [
        (at, e.severity is Severity.RED)
        for e in events
        if e.kind in ALERTING
        and e.rule.rule_id == metric.value
        and w.start <= (at := seconds(e.occurred_at)) <= w.end + GRACE_S
    ]
    if hits:
        red = next((at - w.start for at, is_red in hits if is_red), None)
        return Detection(w.kind, hits[0][0] - w.start, red)
    inside = sum(
        1 for r in readings if r.metric is metric and w.start <= seconds(r.measured_at) <= w.end
    )
    if red_open_at(events, metric.value, w.start):
        reason = "an episode of the metric was already open at red"
    else:
        reason = f"not sustained ({inside} samples inside the event)"
    return Detection(w.kind, None, None, reason)


def score_patient(data: PatientData, rules: RuleSet, quality: Quality) -> list[AlertEvent]:
    """Run the engine and the naive threshold on one patient; add the outcome to `quality`."""
    events = run_engine(data.readings, rules)
    quality.patient_days += data.days
    quality.readings.update(r.metric.value for r in data.readings)
    quality.windows.update(w.kind.value for w in data.windows)
    quality.artifacts += len(data.artifacts)
    quality.detections += [
        detect(w, events, data.readings) for w in data.windows if w.kind in TRUE_EVENTS
    ]
    for e in events:
        if e.kind is AlertKind.OPENED:
            key = (
                e.rule.rule_id,
                e.severity.value,
                cause(e.rule.rule_id, seconds(e.occurred_at), data),
            )
            quality.engine[key] += 1
        if e.kind in ALERTING and e.rule.rule_id != TECHNICAL:
            quality.engine_pages += 1
    rises = naive_rises(data.readings, rules)
    quality.naive_pages += len(rises)
    for metric, at, before, level in rises:
        if before == 0:
            quality.naive[(metric.value, SEVERITY_NAME[level], cause(metric.value, at, data))] += 1
    _score_exercise(data.windows, events, rises, quality)
    return events


def _score_exercise(
    windows: list[Window],
    events: list[AlertEvent],
    rises: list[tuple[Metric, float, int, int]],
    quality: Quality,
) -> None:
    """Count exercise bouts that drew an alert from the engine and from the naive threshold."""
    for w in (w for w in windows if w.kind is Kind.EXERCISE):
        if any(
            e.kind in ALERTING
            and e.rule.rule_id == "heart_rate"
            and w.span_start <= seconds(e.occurred_at) <= w.span_end + GRACE_S
            for e in events
        ):
            quality.exercise_engine += 1
        if any(m is Metric.HEART_RATE and w.covers(at) for m, at, _, _ in rises):
            quality.exercise_naive += 1
