"""Units, codes and plausibility of the vital-sign catalogue."""

from __future__ import annotations

import pytest

from shared.vitals import (
    CATALOG,
    ImplausibleValueError,
    Metric,
    UnitMismatchError,
    to_canonical,
)


@pytest.mark.parametrize(
    ("metric", "value", "unit", "expected"),
    [
        (Metric.HEART_RATE, 72, "/min", 72),
        (Metric.HEART_RATE, 72, "bpm", 72),
        (Metric.HEART_RATE, 72, "count/min", 72),
        (Metric.BLOOD_GLUCOSE, 100, "mg/dL", 100),
        (Metric.BLOOD_GLUCOSE, 5.5, "mmol/L", 99.088),
        (Metric.SPO2, 97, "%", 97),
        (Metric.SYSTOLIC_BP, 120, "mmHg", 120),
        (Metric.DIASTOLIC_BP, 80, "mm[Hg]", 80),
        (Metric.BODY_TEMPERATURE, 98.6, "[degF]", 37),
        (Metric.BODY_TEMPERATURE, 36.6, "Cel", 36.6),
        (Metric.RESPIRATORY_RATE, 16, "breaths/min", 16),
    ],
)
def test_accepted_units_convert_to_the_canonical_unit(
    metric: Metric, value: float, unit: str, expected: float
) -> None:
    assert to_canonical(metric, value, unit) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("metric", "unit"),
    [
        (Metric.HEART_RATE, "mg/dL"),
        (Metric.BLOOD_GLUCOSE, "/min"),
        (Metric.SPO2, "mmHg"),
        (Metric.BODY_TEMPERATURE, "K"),
    ],
)
def test_a_unit_that_does_not_fit_the_metric_is_refused_with_the_accepted_list(
    metric: Metric, unit: str
) -> None:
    with pytest.raises(UnitMismatchError, match="accepted: " + CATALOG[metric].unit):
        to_canonical(metric, 50, unit)


@pytest.mark.parametrize(
    ("metric", "value", "unit"),
    [
        (Metric.HEART_RATE, 0, "/min"),
        (Metric.HEART_RATE, 400, "/min"),
        (Metric.BLOOD_GLUCOSE, -5, "mg/dL"),
        (Metric.BLOOD_GLUCOSE, 100, "mmol/L"),  # 1,801 mg/dL: a unit mix-up, not a patient
        (Metric.SPO2, 0.97, "%"),
        (Metric.SPO2, 101, "%"),
        (Metric.BODY_TEMPERATURE, 98.6, "Cel"),
    ],
)
def test_physiologically_impossible_values_are_refused(
    metric: Metric, value: float, unit: str
) -> None:
    with pytest.raises(ImplausibleValueError, match="physiological range"):
        to_canonical(metric, value, unit)


def test_every_metric_has_a_loinc_code_and_a_ucum_unit() -> None:
    assert set(CATALOG) == set(Metric)
    for spec in CATALOG.values():
        assert spec.loinc and spec.unit in spec.conversions
