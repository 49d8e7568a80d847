"""Catalogue of the vital signs we carry: canonical UCUM unit, LOINC code, accepted units, plausible range."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class Metric(StrEnum):
    """Vital signs a reading can carry."""

    HEART_RATE = "heart_rate"
    BLOOD_GLUCOSE = "blood_glucose"
    SPO2 = "spo2"
    SYSTOLIC_BP = "systolic_bp"
    DIASTOLIC_BP = "diastolic_bp"
    BODY_TEMPERATURE = "body_temperature"
    RESPIRATORY_RATE = "respiratory_rate"


def _same(value: float) -> float:
    return value


# mg/dL per mmol/L of glucose (molar mass 180.16 g/mol).
GLUCOSE_MMOL_TO_MG_DL = 18.016


@dataclass(frozen=True)
class MetricSpec:
    """What a metric is in canonical form and what input units convert into it."""

    metric: Metric
    unit: str  # UCUM, canonical
    loinc: str
    display: str
    # Physiologically possible range in the canonical unit (inclusive); outside it is a device or
    # transcription error, not a patient state. Deliberately wide: the rules decide what is abnormal.
    minimum: float
    maximum: float
    conversions: dict[str, Callable[[float], float]] = field(default_factory=dict)

    def accepted_units(self) -> list[str]:
        """List every input unit this metric accepts, canonical first."""
        return [self.unit, *sorted(u for u in self.conversions if u != self.unit)]


def _per_minute(*aliases: str) -> dict[str, Callable[[float], float]]:
    return {"/min": _same, **{a: _same for a in aliases}}


CATALOG: dict[Metric, MetricSpec] = {
    spec.metric: spec
    for spec in (
        MetricSpec(
            metric=Metric.HEART_RATE,
            unit="/min",
            loinc="8867-4",
            display="Heart rate",
            minimum=20,
            maximum=300,
            conversions=_per_minute("bpm", "beats/min", "{beats}/min", "count/min"),
        ),
        MetricSpec(
            metric=Metric.BLOOD_GLUCOSE,
            unit="mg/dL",
            loinc="2339-0",
            display="Glucose",
            minimum=10,
            maximum=1500,
            conversions={
                "mg/dL": _same,
                "mg/dl": _same,
                "mmol/L": lambda v: v * GLUCOSE_MMOL_TO_MG_DL,
                "mmol/l": lambda v: v * GLUCOSE_MMOL_TO_MG_DL,
            },
        ),
        MetricSpec(
            metric=Metric.SPO2,
            unit="%",
            loinc="59408-5",
            display="Oxygen saturation (SpO2)",
            minimum=50,
            maximum=100,
            conversions={"%": _same},
        ),
        MetricSpec(
            metric=Metric.SYSTOLIC_BP,
            unit="mm[Hg]",
            loinc="8480-6",
            display="Systolic blood pressure",
            minimum=40,
            maximum=300,
            conversions={"mm[Hg]": _same, "mmHg": _same},
        ),
        MetricSpec(
            metric=Metric.DIASTOLIC_BP,
            unit="mm[Hg]",
            loinc="8462-4",
            display="Diastolic blood pressure",
            minimum=20,
            maximum=200,
            conversions={"mm[Hg]": _same, "mmHg": _same},
        ),
        MetricSpec(
            metric=Metric.BODY_TEMPERATURE,
            unit="Cel",
            loinc="8310-5",
            display="Body temperature",
            minimum=25,
            maximum=45,
            conversions={
                "Cel": _same,
                "°C": _same,
                "degC": _same,
                "[degF]": lambda v: (v - 32) * 5 / 9,
                "°F": lambda v: (v - 32) * 5 / 9,
            },
        ),
        MetricSpec(
            metric=Metric.RESPIRATORY_RATE,
            unit="/min",
            loinc="9279-1",
            display="Respiratory rate",
            minimum=2,
            maximum=80,
            conversions=_per_minute("breaths/min", "{breaths}/min", "count/min"),
        ),
    )
}


class UnitMismatchError(ValueError):
    """The unit does not measure this metric."""


class ImplausibleValueError(ValueError):
    """The value is outside what a living patient can show."""


def to_canonical(metric: Metric, value: float, unit: str) -> float:
    """Convert a value in an accepted unit to the metric's canonical unit and check plausibility."""
    spec = CATALOG[metric]
    convert = spec.conversions.get(unit)
    if convert is None:
        raise UnitMismatchError(
            f"unit {unit!r} does not fit {metric.value}; accepted: {', '.join(spec.accepted_units())}"
        )
    canonical = round(convert(value), 3)
    if not spec.minimum <= canonical <= spec.maximum:
        raise ImplausibleValueError(
            f"{metric.value} {canonical:g} {spec.unit} is outside the physiological range "
            f"[{spec.minimum:g}, {spec.maximum:g}]"
        )
    return canonical
