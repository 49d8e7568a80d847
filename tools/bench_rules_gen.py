"""Synthetic patient-days for `make bench-rules`, as canonical `shared.events.Reading` objects.

Seeded and deterministic: patient i of seed s is always the same data. Per patient-day:
- heart rate every 60 s (± 5 s): a personal baseline (58-76 /min) with circadian drift (± 4-8,
  lowest at 03:00), everyday activity bursts 07-23 h (stairs, walking: +10 to +30 /min for
  2-6 min) and exercise bouts 06-22 h (4 min ramp up, 10-30 min at 110-140 /min, 6 min down);
- CGM glucose every 300 s (± 2 s): baseline, dawn rise and three meals (peaks stay <= ~170 mg/dL);
- SpO2 every 120 s (± 10 s): baseline 96.5-98.5 % with a night dip, whole percent as wearables send;
- motion artifacts: single samples replaced by a heart rate of 180-220 /min or an SpO2 of ~80 %;
- dropouts: 10-60 min with no reading of any metric (watch off the wrist);
- injected true events, each with a known start and end: tachycardia > 130 /min for 10-30 min
  (abrupt onset and offset), hypoglycaemia < 54 mg/dL for 20-40 min (20-30 min descent before,
  20-30 min recovery after), desaturation <= 90 % for 5-15 min (abrupt).
Events, exercise bouts, activity bursts and dropouts never overlap (a guard apart), so every event
is fully observed and the engine, not the data, decides whether it is caught.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from shared.events import Reading
from shared.ids import derive_id
from shared.vitals import CATALOG, Metric

EPOCH = datetime(2026, 11, 1, tzinfo=UTC)  # day 0 of every synthetic patient
DAY_S = 86_400.0
MIN_S = 60.0
GUARD_S = 45 * MIN_S  # free time between two scheduled windows
EVENT_PROBABILITY = 0.5  # per event kind and patient-day
SOURCE = "synthetic"


class Kind(StrEnum):
    """What a window of a patient-day is."""

    TACHYCARDIA = "tachycardia"
    HYPOGLYCAEMIA = "hypoglycaemia"
    DESATURATION = "desaturation"
    EXERCISE = "exercise"
    ACTIVITY = "activity"
    DROPOUT = "dropout"


TRUE_EVENTS: dict[Kind, Metric] = {
    Kind.TACHYCARDIA: Metric.HEART_RATE,
    Kind.HYPOGLYCAEMIA: Metric.BLOOD_GLUCOSE,
    Kind.DESATURATION: Metric.SPO2,
}


@dataclass(frozen=True)
class Window:
    """A scheduled stretch of a patient-day; times in seconds since EPOCH.

    [start, end] is where the criterion holds (event) or the plateau (exercise); [span_start,
    span_end] adds the ramps before and after, i.e. everything the window perturbs.
    """

    kind: Kind
    start: float
    end: float
    span_start: float
    span_end: float
    level: float  # event value, exercise peak, activity rise

    def covers(self, t: float) -> bool:
        """True when t lies within the whole span."""
        return self.span_start <= t <= self.span_end


@dataclass(frozen=True)
class Profile:
    """A patient's own baselines (drawn once per patient)."""

    hr_base: float
    hr_swing: float
    glucose_base: float
    spo2_base: float


@dataclass
class PatientData:
    """One synthetic patient over `days` days: readings in event-time order and the windows."""

    patient_id: str
    days: int
    readings: list[Reading] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    artifacts: list[tuple[Metric, float]] = field(default_factory=list)  # (metric, time)


def reading(patient_id: str, metric: Metric, t: float, value: float) -> Reading:
    """A canonical Reading, its id derived as ingest derives one (UUIDv5 of source, patient,...)."""
    at = EPOCH + timedelta(milliseconds=round(t * 1000))
    spec = CATALOG[metric]
    return Reading(
        reading_id=derive_id(SOURCE, patient_id, metric.value, at.isoformat(), ""),
        patient_id=patient_id,
        source=SOURCE,
        metric=metric,
        value=value,
        unit=spec.unit,
        code=spec.loinc,
        measured_at=at,
        received_at=at,
    )


# Hours of the day (UTC, taken as the patient's local time) a window may lie in.
WAKING = {Kind.EXERCISE: (6.0, 22.0), Kind.ACTIVITY: (7.0, 23.0)}
ANY_HOUR = (1.0, 23.0)


def _place(
    rng: random.Random,
    busy: list[Window],
    day0: float,
    kind: Kind,
    span: tuple[float, float, float],
) -> float | None:
    """A start time whose span [start-lead, start+length+tail] lies within the kind's hours and
    keeps GUARD_S from every window already placed."""
    lead, length, tail = span
    first, last = WAKING.get(kind, ANY_HOUR)
    for _ in range(60):
        start = rng.uniform(day0 + first * 3600 + lead, day0 + last * 3600 - length - tail)
        lo, hi = start - lead - GUARD_S, start + length + tail + GUARD_S
        if all(hi < w.span_start or lo > w.span_end for w in busy):
            return start
    return None


Spec = tuple[float, float, float, float]


def _add(busy: list[Window], rng: random.Random, day0: float, kind: Kind, spec: Spec) -> None:
    """Schedule one window: spec = (lead, length, tail, level)."""
    lead, length, tail, level = spec
    start = _place(rng, busy, day0, kind, (lead, length, tail))
    if start is not None:
        busy.append(Window(kind, start, start + length, start - lead, start + length + tail, level))


def schedule(rng: random.Random, day0: float) -> list[Window]:
    """Windows of one day: true events first (so they always fit), then the rest. Events and
    dropouts may fall at any hour, exercise only 06-22 h, activity bursts 07-23 h."""
    u, busy = rng.uniform, list[Window]()
    if rng.random() < EVENT_PROBABILITY:
        _add(busy, rng, day0, Kind.TACHYCARDIA, (0, u(10, 30) * MIN_S, 0, u(135, 165)))
    if rng.random() < EVENT_PROBABILITY:
        spec = (u(20, 30) * MIN_S, u(20, 40) * MIN_S, u(20, 30) * MIN_S, u(42, 50))
        _add(busy, rng, day0, Kind.HYPOGLYCAEMIA, spec)
    if rng.random() < EVENT_PROBABILITY:
        _add(busy, rng, day0, Kind.DESATURATION, (0, u(5, 15) * MIN_S, 0, u(84, 89)))
    for _ in range(rng.choice((0, 1, 1, 2))):
        _add(busy, rng, day0, Kind.EXERCISE, (4 * MIN_S, u(10, 30) * MIN_S, 6 * MIN_S, u(110, 140)))
    for _ in range(rng.randint(4, 10)):
        _add(busy, rng, day0, Kind.ACTIVITY, (0, u(2, 6) * MIN_S, 0, u(10, 30)))
    for _ in range(rng.randint(1, 3)):
        _add(busy, rng, day0, Kind.DROPOUT, (0, u(10, 60) * MIN_S, 0, 0.0))
    return sorted(busy, key=lambda w: w.span_start)


def _hour(t: float) -> float:
    return (t % DAY_S) / 3600


def _ramp(w: Window, t: float) -> float:
    """0 outside the span, rising 0 -> 1 over the lead, 1 on [start, end], falling over the tail."""
    if t < w.span_start or t > w.span_end:
        return 0.0
    if t < w.start:
        return (t - w.span_start) / (w.start - w.span_start)
    if t > w.end:
        return (w.span_end - t) / (w.span_end - w.end)
    return 1.0


def heart_rate(rng: random.Random, p: Profile, t: float, active: list[Window]) -> float:
    """Heart rate at t given the windows covering it."""
    normal = p.hr_base + p.hr_swing * math.cos(2 * math.pi * (_hour(t) - 15) / 24)
    normal += rng.gauss(0, 3)
    for w in active:
        if w.kind is Kind.TACHYCARDIA and w.start <= t <= w.end:
            return max(131.0, w.level + rng.gauss(0, 3))
        if w.kind is Kind.EXERCISE:
            return normal + (w.level + rng.gauss(0, 3) - normal) * _ramp(w, t)
        if w.kind is Kind.ACTIVITY:
            return normal + w.level
    return normal


Meals = list[tuple[float, float]]  # (time, rise in mg/dL)


def glucose(rng: random.Random, p: Profile, t: float, meals: Meals, active: list[Window]) -> float:
    """CGM glucose: baseline, dawn rise, meal responses (gamma-shaped, peak after 50 min), sensor
    noise; a hypoglycaemia window holds it < 54 on [start, end] and blends towards 55 on its ramps."""
    normal = p.glucose_base + 8 * math.cos(2 * math.pi * (_hour(t) - 6) / 24)
    for at, rise in meals:
        if 0 < t - at < 6 * 3600:
            x = (t - at) / (50 * MIN_S)
            normal += rise * x * math.exp(1 - x)
    normal += rng.gauss(0, 3 + 0.03 * normal)
    for w in active:
        if w.kind is Kind.HYPOGLYCAEMIA:
            if w.start <= t <= w.end:
                return min(53.0, max(40.0, w.level + rng.gauss(0, 2)))
            return max(55.0, normal + (54.0 - normal) * _ramp(w, t))
    return normal


def spo2(rng: random.Random, p: Profile, t: float, active: list[Window]) -> float:
    """SpO2 in whole percent: baseline, a night dip (deepest at 03:00), noise; <= 90 in a desat."""
    for w in active:
        if w.kind is Kind.DESATURATION and w.start <= t <= w.end:
            return float(min(90, round(w.level + rng.gauss(0, 1.5))))
    night = max(0.0, 0.8 * math.cos(2 * math.pi * (_hour(t) - 3) / 24))
    return float(min(100, round(p.spo2_base - night + rng.gauss(0, 0.8))))


# metric, sampling interval, jitter (seconds)
SAMPLING: tuple[tuple[Metric, float, float], ...] = (
    (Metric.HEART_RATE, 60.0, 5.0),
    (Metric.BLOOD_GLUCOSE, 300.0, 2.0),
    (Metric.SPO2, 120.0, 10.0),
)
Sample = tuple[float, Metric, float]


def _meals(rng: random.Random, p: Profile, day0: float) -> Meals:
    """Breakfast, lunch, dinner (± 40 min); rises keep the peak at about 170 mg/dL or below."""
    rise = max(20.0, 160.0 - p.glucose_base)
    return [
        (day0 + (hour + rng.uniform(-40, 40) / 60) * 3600, rng.uniform(20.0, rise))
        for hour in (7.5, 12.5, 19.5)
    ]


def _day_samples(
    rng: random.Random, p: Profile, day0: float, windows: list[Window], meals: Meals
) -> list[Sample]:
    """Every metric's samples of the day (none inside a dropout), metrics still apart."""
    samples: list[Sample] = []
    for metric, interval, jitter in SAMPLING:
        for k in range(int(DAY_S // interval)):
            t = day0 + jitter + k * interval + rng.uniform(-jitter, jitter)
            active = [w for w in windows if w.covers(t)]
            if any(w.kind is Kind.DROPOUT for w in active):
                continue
            if metric is Metric.HEART_RATE:
                value = heart_rate(rng, p, t, active)
            elif metric is Metric.BLOOD_GLUCOSE:
                value = glucose(rng, p, t, meals, active)
            else:
                value = spo2(rng, p, t, active)
            samples.append((t, metric, round(value, 1)))
    return samples


def _add_artifacts(rng: random.Random, samples: list[Sample]) -> list[tuple[Metric, float]]:
    """Motion artifacts: single samples replaced by HR 180-220 /min or SpO2 around 80 %."""
    hr = [i for i, s in enumerate(samples) if s[1] is Metric.HEART_RATE]
    ox = [i for i, s in enumerate(samples) if s[1] is Metric.SPO2]
    picks = rng.sample(hr, min(len(hr), rng.randint(6, 12)))
    for i in picks:
        samples[i] = (samples[i][0], Metric.HEART_RATE, float(rng.randint(180, 220)))
    drops = rng.sample(ox, min(len(ox), rng.randint(3, 8)))
    for i in drops:
        samples[i] = (samples[i][0], Metric.SPO2, float(round(rng.gauss(80, 2))))
    return [(samples[i][1], samples[i][0]) for i in (*picks, *drops)]


def generate_patient(seed: int, index: int, days: int) -> PatientData:
    """Patient `index` of `seed` over `days` consecutive days, readings sorted by event time."""
    rng = random.Random(f"bench-rules:{seed}:{index}")
    profile = Profile(
        hr_base=rng.uniform(58, 76),
        hr_swing=rng.uniform(4, 8),
        glucose_base=rng.uniform(85, 110),
        spo2_base=rng.uniform(96.5, 98.5),
    )
    data = PatientData(patient_id=f"syn-{seed}-{index:06d}", days=days)
    samples: list[Sample] = []
    for day in range(days):
        day0 = day * DAY_S
        windows = schedule(rng, day0)
        day_samples = _day_samples(rng, profile, day0, windows, _meals(rng, profile, day0))
        data.artifacts += _add_artifacts(rng, day_samples)
        data.windows += windows
        samples += day_samples
    samples.sort(key=lambda s: s[0])
    data.readings = [reading(data.patient_id, m, t, v) for t, m, v in samples]
    return data
