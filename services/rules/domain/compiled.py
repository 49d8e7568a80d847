"""Rules compiled for the hot path: plain floats with exclusive comparisons, refs built once.

Band codes: 0 green, 1 yellow low, 2 yellow high, 3 red low, 4 red high. For NEWS2, 1 is "a single
parameter scored 3", 2 and 4 the aggregate at yellow and red.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from services.rules.domain.bands import Band, Cut, innermost
from services.rules.domain.eventtime import seconds_to_micros
from services.rules.domain.ruleset import Clear, MetricRule, News2Rule, RuleSet, Sustain
from services.rules.domain.state import rule_ref
from services.rules.domain.thresholds import MetricBands, PatientThresholds
from shared.events import RuleRef
from shared.vitals import CATALOG, Metric

LEVEL_OF_BAND = (0, 1, 1, 2, 2)
K = TypeVar("K")
V = TypeVar("V")


def band_for(level: int, band: int) -> int:
    """Return the band code of `level` on the same side as `band` (both non-green)."""
    return 2 * (level - 1) + (band - 1) % 2 + 1


class Policy(NamedTuple):
    """Persistence and hysteresis of a track, in microseconds and sample counts."""

    sustain_us: int
    sustain_n: int
    clear_us: int
    clear_n: int
    gap_us: int


def policy(sustain: Sustain, clear: Clear, gap_seconds: float) -> Policy:
    """Compile sustain/clear/gap settings."""
    return Policy(
        seconds_to_micros(sustain.seconds),
        sustain.samples,
        seconds_to_micros(clear.seconds),
        clear.samples,
        seconds_to_micros(gap_seconds),
    )


def _exclusive(cut: Cut | None, *, high: bool, shift: float = 0.0) -> float:
    """Return x such that 'beyond the cut' is exactly `v > x` (high) or `v < x` (low)."""
    if cut is None:
        return math.inf if high else -math.inf
    value = cut.value - shift if high else cut.value + shift
    if not cut.inclusive:
        return value
    return math.nextafter(value, -math.inf if high else math.inf)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One metric's rule as the engine applies it."""

    metric: Metric
    unit: str
    red_hi: float
    red_lo: float
    yellow_hi: float
    yellow_lo: float
    clear_hi: float
    clear_lo: float
    policy: Policy
    refs: tuple[RuleRef, ...]  # by band code; [0] is the red-high ref, never used for green

    def band_of(self, value: float) -> int:
        """Return the band code of a value."""
        if value > self.red_hi:
            return 4
        if value < self.red_lo:
            return 3
        if value > self.yellow_hi:
            return 2
        if value < self.yellow_lo:
            return 1
        return 0

    def is_clear(self, value: float) -> bool:
        """Return True when the value lies the clear margin inside the green range."""
        return self.clear_lo <= value <= self.clear_hi


@dataclass(frozen=True, slots=True)
class CompiledNews2:
    """The NEWS2 aggregate rule."""

    window_us: int
    min_parameters: int
    yellow_at: int
    red_at: int
    single_three: bool
    clear_at_most: int
    policy: Policy
    refs: tuple[RuleRef, ...]

    def band_of(self, total: int, any_three: bool) -> int:
        """Return the band code of an aggregate."""
        if total >= self.red_at:
            return 4
        if total >= self.yellow_at:
            return 2
        return 1 if any_three and self.single_three else 0

    def is_clear(self, total: int, any_three: bool) -> bool:
        """Return True when the aggregate is the clear margin below yellow and no parameter is 3."""
        return total <= self.clear_at_most and not (any_three and self.single_three)


@dataclass(frozen=True, slots=True)
class CompiledRules:
    """A whole rule set, compiled."""

    version: str
    metrics: dict[Metric, CompiledRule]
    news2: CompiledNews2 | None
    data_gap_us: int

    def gap_us(self, metric: Metric) -> int:
        """Return how long the metric may stay silent while its episode is open."""
        rule = self.metrics.get(metric)
        return rule.policy.gap_us if rule is not None else self.data_gap_us


class _IdentityCache(Generic[K, V]):
    """Values computed from immutable objects, kept while the object lives (by identity)."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref[K], V]] = {}

    def get(self, obj: K) -> V | None:
        hit = self._entries.get(id(obj))
        return hit[1] if hit is not None and hit[0]() is obj else None

    def put(self, obj: K, value: V) -> V:
        key = id(obj)
        self._entries[key] = (weakref.ref(obj, lambda _: self._entries.pop(key, None)), value)
        return value


_RULE_SETS: _IdentityCache[RuleSet, CompiledRules] = _IdentityCache()
_PATIENTS: _IdentityCache[PatientThresholds, dict[Metric, tuple[CompiledRules, CompiledRule]]]
_PATIENTS = _IdentityCache()


def compiled_rules(rules: RuleSet) -> CompiledRules:
    """Return the rule set compiled, once per RuleSet object."""
    cached = _RULE_SETS.get(rules)
    if cached is not None:
        return cached
    gap = rules.data_gap.seconds
    compiled = CompiledRules(
        version=rules.version,
        metrics={
            metric: compile_rule(metric, rule, version=rules.version, gap_seconds=gap)
            for metric, rule in rules.rules.items()
        },
        news2=_compile_news2(rules.news2, rules.version, gap) if rules.news2.enabled else None,
        data_gap_us=seconds_to_micros(gap),
    )
    return _RULE_SETS.put(rules, compiled)


def compile_rule(
    metric: Metric,
    rule: MetricRule,
    *,
    version: str,
    gap_seconds: float,
    bands: MetricBands | None = None,
    label: str | None = None,
) -> CompiledRule:
    """Compile a metric rule, with a patient's bands in place of the rule's when given."""
    red, yellow = (bands.red, bands.yellow) if bands is not None else (rule.red, rule.yellow)
    low, high = innermost(red, yellow)
    margin = rule.clear.margin
    red_hi = _exclusive(red.high if red is not None else None, high=True)
    red_lo = _exclusive(red.low if red is not None else None, high=False)
    # Without a yellow cut on a side, yellow there starts where red does.
    yellow_high = yellow.high if yellow is not None else None
    yellow_low = yellow.low if yellow is not None else None
    return CompiledRule(
        metric=metric,
        unit=rule.unit,
        red_hi=red_hi,
        red_lo=red_lo,
        yellow_hi=_exclusive(yellow_high, high=True) if yellow_high is not None else red_hi,
        yellow_lo=_exclusive(yellow_low, high=False) if yellow_low is not None else red_lo,
        clear_hi=_exclusive(high, high=True, shift=margin),
        clear_lo=_exclusive(low, high=False, shift=margin),
        policy=policy(rule.sustain, rule.clear, rule.data_gap_seconds or gap_seconds),
        refs=_metric_refs(metric, red, yellow, version=version, label=label),
    )


def _metric_refs(
    metric: Metric, red: Band | None, yellow: Band | None, *, version: str, label: str | None
) -> tuple[RuleRef, ...]:
    spec = CATALOG[metric]
    refs: list[RuleRef | None] = []
    for severity, band in (("yellow", yellow), ("red", red)):
        for side, cut in (
            ("low", band.low if band else None),
            ("high", band.high if band else None),
        ):
            if band is None or cut is None:
                refs.append(None)
                continue
            source = label or band.source or "unsourced"
            description = f"{spec.display}, {severity} ({side}); {source}"
            threshold = cut.text(spec.unit, high=side == "high")
            refs.append(rule_ref(metric.value, version, description, threshold))
    # A missing band borrows its neighbour's ref: same severity other side, else the other severity.
    yl, yh, rl, rh = refs
    filled = (
        _first(yl, yh, rl, rh),
        _first(yh, yl, rh, rl),
        _first(rl, rh, yl, yh),
        _first(rh, rl, yh, yl),
    )
    return (filled[3], *filled)


def _first(*refs: RuleRef | None) -> RuleRef:
    return next(ref for ref in refs if ref is not None)  # a rule has at least one band


def _compile_news2(rule: News2Rule, version: str, gap_seconds: float) -> CompiledNews2:
    description = f"NEWS2 aggregate of wearable vitals; {rule.source}"
    single = rule_ref("news2", version, description, "any single parameter scoring 3")
    yellow = rule_ref("news2", version, description, f"aggregate ≥ {rule.yellow_at}")
    red = rule_ref("news2", version, description, f"aggregate ≥ {rule.red_at}")
    return CompiledNews2(
        window_us=seconds_to_micros(rule.window_seconds),
        min_parameters=rule.min_parameters,
        yellow_at=rule.yellow_at,
        red_at=rule.red_at,
        single_three=rule.single_parameter_3,
        clear_at_most=rule.yellow_at - 1 - int(rule.clear.margin),
        policy=policy(rule.sustain, rule.clear, gap_seconds),
        refs=(red, single, yellow, red, red),
    )


def rule_for(
    rules: RuleSet, metric: Metric, thresholds: PatientThresholds | None
) -> CompiledRule | None:
    """Return the metric's compiled rule, with the patient's bands applied when they have some."""
    compiled = compiled_rules(rules)
    rule = compiled.metrics.get(metric)
    if rule is None or thresholds is None:
        return rule
    bands = thresholds.bands.get(metric)
    if bands is None:
        return rule
    cache = _PATIENTS.get(thresholds)
    if cache is None:
        cache = _PATIENTS.put(thresholds, {})
    hit = cache.get(metric)
    if hit is not None and hit[0] is compiled:
        return hit[1]
    own = compile_rule(
        metric,
        rules.rules[metric],
        version=f"{rules.version}+patient.{thresholds.revision}",
        gap_seconds=rules.data_gap.seconds,
        bands=bands,
        label=f"patient thresholds, revision {thresholds.revision}",
    )
    cache[metric] = (compiled, own)
    return own
