"""Per-patient thresholds: a clinician's own bands for a patient (an athlete's HR, a diabetic's targets).

An override replaces a metric's red and yellow bands as a whole (a side left out has no threshold);
persistence, hysteresis and data-gap settings stay those of the rule set. Every alert decided under
an override records the rule version plus the override's revision.
"""

from __future__ import annotations

from pydantic import Field, ValidationError, model_validator

from services.rules.domain.bands import Band, FieldError, Strict, check_bands, check_margin
from services.rules.domain.ruleset import RuleSet, describe_validation_error
from services.rules.errors import RulesError
from shared.vitals import Metric


class ThresholdError(RulesError):
    """Per-patient thresholds are invalid; the message names the field."""


class MetricBands(Strict):
    """A patient's red and yellow bands for one metric, in the metric's canonical unit."""

    red: Band | None = None
    yellow: Band | None = None

    @model_validator(mode="after")
    def _ordered(self) -> MetricBands:
        check_bands(self.red, self.yellow)
        return self


class PatientThresholds(Strict):
    """A patient's own bands per metric; `revision` identifies this version of them for audit."""

    revision: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
    bands: dict[Metric, MetricBands] = Field(default_factory=dict)


def check_patient_thresholds(thresholds: PatientThresholds, *, rules: RuleSet) -> None:
    """Reject overrides the rule set cannot apply: no rule for the metric, no room to clear."""
    for metric, bands in thresholds.bands.items():
        rule = rules.rules.get(metric)
        if rule is None:
            raise ThresholdError(f"bands.{metric.value}: the rule set has no rule for this metric")
        try:
            check_margin(bands.red, bands.yellow, rule.clear.margin, field="yellow")
        except FieldError as exc:
            raise ThresholdError(
                f"bands.{metric.value}.{exc.field}: {exc.message} "
                "(the rule's clear.margin applies to a patient's bands too)"
            ) from None


def parse_patient_thresholds(data: object, *, rules: RuleSet) -> PatientThresholds:
    """Validate a patient's thresholds against the model and the rule set, or raise ThresholdError."""
    try:
        thresholds = PatientThresholds.model_validate(data)
    except ValidationError as exc:
        raise ThresholdError(describe_validation_error(exc)) from None
    check_patient_thresholds(thresholds, rules=rules)
    return thresholds
