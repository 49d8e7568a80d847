"""Per-patient thresholds: a clinician's bands replace the defaults; unsafe ones are refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.rules.domain import (
    PatientThresholds,
    ThresholdError,
    check_patient_thresholds,
    classify,
    parse_patient_thresholds,
)
from shared.events import Severity
from shared.vitals import Metric
from tests.services.rules.test_domain import (
    ESCALATED,
    OPENED,
    RED,
    RULES,
    YELLOW,
    every,
    rules_with,
    run,
    series,
    steps,
)

ATHLETE = parse_patient_thresholds(
    {
        "revision": "rev-1",
        "bands": {
            "heart_rate": {
                "red": {"above": 150, "below": 35},
                "yellow": {"above": 130, "below": 40},
            }
        },
    },
    rules=RULES,
)


@pytest.mark.parametrize(
    ("value", "default", "athlete"),
    [(42, Severity.YELLOW, Severity.GREEN), (38, Severity.RED, Severity.YELLOW),
     (125, Severity.RED, Severity.GREEN), (140, Severity.RED, Severity.YELLOW),
     (151, Severity.RED, Severity.RED)],
)  # fmt: skip
def test_a_patients_bands_replace_the_defaults(
    value: float, default: Severity, athlete: Severity
) -> None:
    assert classify(Metric.HEART_RATE, value, rules=RULES) is default
    assert classify(Metric.HEART_RATE, value, rules=RULES, overrides=ATHLETE) is athlete


def test_an_overridden_alert_records_the_patients_revision() -> None:
    readings = series(*every(30, 42, 42, 42, 36, 36, 36))
    assert steps(run(readings)[1]) == [(OPENED, YELLOW), (ESCALATED, RED)]
    _, events = run(readings, overrides=ATHLETE)
    (opened,) = events
    assert (opened.severity, opened.rule.threshold) == (YELLOW, "< 40 /min")
    assert opened.rule.version == f"{RULES.version}+patient.rev-1"
    assert "patient thresholds, revision rev-1" in opened.rule.description


def test_metrics_without_patient_bands_keep_the_defaults() -> None:
    spo2 = series(*every(30, 80, 80), metric=Metric.SPO2)
    assert run(spo2, overrides=ATHLETE)[1] == run(spo2)[1]


@pytest.mark.parametrize(
    ("bands", "message"),
    [
        (
            {"red": {"below": 45}, "yellow": {"below": 40}},
            "bands.heart_rate.red.below: must be less than yellow.below (40)",
        ),
        (
            {"red": {"above": 120}, "yellow": {"above": 130}},
            "bands.heart_rate.red.above: must be greater than yellow.above (130)",
        ),
        (
            {"red": {"at_or_above": 130}, "yellow": {"above": 130}},
            "bands.heart_rate.red.at_or_above: must be greater than yellow.above (130)",
        ),
        ({"yellow": {"below": 90, "above": 80}}, "bands.heart_rate.yellow.below: must be less than yellow.above (80)"),
        ({"yellow": {"below": 60, "above": 65}}, "bands.heart_rate.yellow: margin 5 leaves no value clear"),
        ({"red": {"above": "fast"}}, "bands.heart_rate.red.above: Input should be a valid number"),
        ({}, "bands.heart_rate.red: set a red or a yellow band"),
    ],
)  # fmt: skip
def test_unsafe_patient_bands_are_refused_naming_the_field(
    bands: dict[str, Any], message: str
) -> None:
    with pytest.raises(ThresholdError) as caught:
        parse_patient_thresholds({"revision": "r", "bands": {"heart_rate": bands}}, rules=RULES)
    assert message in str(caught.value)


def test_the_model_alone_refuses_red_easier_than_yellow() -> None:
    with pytest.raises(ValidationError) as caught:
        PatientThresholds.model_validate(
            {
                "revision": "r",
                "bands": {"spo2": {"red": {"at_or_below": 93}, "yellow": {"at_or_below": 92}}},
            }
        )
    (error,) = caught.value.errors()
    assert error["loc"] == ("bands", "spo2")
    assert "red.at_or_below: must be less than yellow.at_or_below (92)" in error["msg"]


def test_bands_for_a_metric_without_a_rule_are_refused() -> None:
    thresholds = PatientThresholds.model_validate(
        {"revision": "r", "bands": {"blood_glucose": {"yellow": {"below": 80}}}}
    )
    with pytest.raises(ThresholdError, match=r"bands\.blood_glucose: the rule set has no rule"):
        check_patient_thresholds(thresholds, rules=rules_with(**{"rules.blood_glucose": None}))
