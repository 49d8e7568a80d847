"""NEWS2 parameter scores (RCP 2017, Chart 1) for the vitals a wearable can send.

Consciousness and supplemental oxygen are not measured by wearables; they count as Alert and air (0),
and SpO2 uses Scale 1. An aggregate over fewer than the five parameters is therefore a lower bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

from shared.vitals import Metric

INF = math.inf

# (inclusive upper bound, score), ascending; the first bound at or above the value decides.
_SCORES: dict[Metric, tuple[tuple[float, int], ...]] = {
    # RCP: <=8 -> 3, 9-11 -> 1, 12-20 -> 0, 21-24 -> 2, >=25 -> 3
    Metric.RESPIRATORY_RATE: ((8, 3), (11, 1), (20, 0), (24, 2), (INF, 3)),
    # RCP Scale 1: <=91 -> 3, 92-93 -> 2, 94-95 -> 1, >=96 -> 0
    Metric.SPO2: ((91, 3), (93, 2), (95, 1), (INF, 0)),
    # RCP: <=90 -> 3, 91-100 -> 2, 101-110 -> 1, 111-219 -> 0, >=220 -> 3
    Metric.SYSTOLIC_BP: ((90, 3), (100, 2), (110, 1), (219, 0), (INF, 3)),
    # RCP: <=40 -> 3, 41-50 -> 1, 51-90 -> 0, 91-110 -> 1, 111-130 -> 2, >=131 -> 3
    Metric.HEART_RATE: ((40, 3), (50, 1), (90, 0), (110, 1), (130, 2), (INF, 3)),
    # RCP: <=35.0 -> 3, 35.1-36.0 -> 1, 36.1-38.0 -> 0, 38.1-39.0 -> 1, >=39.1 -> 2
    Metric.BODY_TEMPERATURE: ((35.0, 3), (36.0, 1), (38.0, 0), (39.0, 1), (INF, 2)),
}

# The parameters in RCP chart order; alerts list contributors in this order.
NEWS2_METRICS: tuple[Metric, ...] = tuple(_SCORES)


def news2_score(metric: Metric, value: float) -> int:
    """Return the NEWS2 score (0-3) of one parameter's value."""
    for upper, score in _SCORES[metric]:
        if value <= upper:
            return score
    return 0  # unreachable: the last bound is infinite


class Aggregate(NamedTuple):
    """A NEWS2 aggregate: total, how many parameters it covers, and each parameter's score."""

    total: int
    parameters: int
    any_three: bool
    scores: tuple[tuple[Metric, int], ...]

    def reason(self) -> str:
        """Explain the total by its scoring parameters, e.g. 'NEWS2 7: spo2 3, heart_rate 2'."""
        parts = ", ".join(f"{metric.value} {score}" for metric, score in self.scores if score)
        return f"NEWS2 {self.total}" + (f": {parts}" if parts else "")


def aggregate(values: Iterable[tuple[Metric, float]]) -> Aggregate:
    """Score each (parameter, value) and sum them."""
    scores = []
    total = 0
    for metric, value in values:
        score = news2_score(metric, value)
        scores.append((metric, score))
        total += score
    return Aggregate(total, len(scores), any(s == 3 for _, s in scores), tuple(scores))
