"""Rule set: the shipped file's bands match the issue exactly; bad files name the rule and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from services.rules.domain import (
    DEFAULT_RULES_FILE,
    MetricBands,
    RuleSetError,
    classify,
    load_rule_set,
    parse_rule_set,
)
from shared.events import Severity
from shared.vitals import CATALOG, Metric
from tests.services.rules.test_domain import RULES, rule_data

G, Y, R = Severity.GREEN, Severity.YELLOW, Severity.RED
M = Metric

# Every boundary of the issue text, with the value just inside and just outside it.
BOUNDARIES: list[tuple[Metric, float, Severity]] = [
    # heart rate /min: red > 120 or < 40; yellow > 100 or < 50
    *[(M.HEART_RATE, v, s) for v, s in [(121, R), (120.1, R), (120, Y), (101, Y), (100, G)]],
    *[(M.HEART_RATE, v, s) for v, s in [(50, G), (49.9, Y), (40, Y), (39.9, R), (39, R)]],
    # blood glucose mg/dL: red < 54 or > 250; yellow < 70 or > 180
    *[(M.BLOOD_GLUCOSE, v, s) for v, s in [(53.9, R), (54, Y), (69.9, Y), (70, G), (180, G)]],
    *[(M.BLOOD_GLUCOSE, v, s) for v, s in [(180.1, Y), (250, Y), (250.1, R)]],
    # SpO2 %: red <= 91; yellow 92-95
    *[(M.SPO2, v, s) for v, s in [(91, R), (91.5, Y), (92, Y), (95, Y), (95.5, G), (96, G)]],
    *[(M.SPO2, v, s) for v, s in [(100, G), (60, R)]],
    # systolic mm[Hg]: red >= 180 or <= 90; yellow >= 140 or 91-100
    *[(M.SYSTOLIC_BP, v, s) for v, s in [(180, R), (179.9, Y), (140, Y), (139.9, G)]],
    *[(M.SYSTOLIC_BP, v, s) for v, s in [(100.1, G), (100, Y), (91, Y), (90.9, Y), (90, R)]],
    # diastolic mm[Hg]: red >= 120
    *[(M.DIASTOLIC_BP, v, s) for v, s in [(120, R), (119.9, G), (40, G)]],
    # body temperature Cel: red >= 39.1 or <= 35.0; yellow 38.1-39.0 or 35.1-36.0
    *[(M.BODY_TEMPERATURE, v, s) for v, s in [(39.1, R), (39.0, Y), (38.1, Y), (38.0, G)]],
    *[(M.BODY_TEMPERATURE, v, s) for v, s in [(36.1, G), (36.0, Y), (35.1, Y), (35.0, R)]],
    # respiratory rate /min: red >= 25 or <= 8; yellow 21-24 or 9-11
    *[(M.RESPIRATORY_RATE, v, s) for v, s in [(25, R), (24, Y), (21, Y), (20, G), (12, G)]],
    *[(M.RESPIRATORY_RATE, v, s) for v, s in [(11, Y), (9, Y), (8, R)]],
]


@pytest.mark.parametrize(("metric", "value", "expected"), BOUNDARIES)
def test_each_band_boundary_of_the_default_rules(
    metric: Metric, value: float, expected: Severity
) -> None:
    assert classify(metric, value, rules=RULES) is expected


def test_the_default_file_covers_every_metric_with_cited_canonical_rules() -> None:
    assert set(RULES.rules) == set(Metric)
    for metric, rule in RULES.rules.items():
        assert rule.unit == CATALOG[metric].unit
        assert all(band.source for band in (rule.red, rule.yellow) if band is not None)


@pytest.mark.parametrize(
    ("metric", "seconds", "samples"),
    [(M.HEART_RATE, 60, 3), (M.SPO2, 30, 2), (M.BLOOD_GLUCOSE, 900, 2)],
)
def test_persistence_defaults(metric: Metric, seconds: float, samples: int) -> None:
    sustain = RULES.rules[metric].sustain
    assert (sustain.seconds, sustain.samples) == (seconds, samples)


# A bad file is refused with a message naming the rule and the field.
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"rules.heart_rate.red.above": 100},
            "rules.heart_rate.red.above: must be greater than yellow.above (100)",
        ),
        (
            {"rules.heart_rate.red.below": 55},
            "rules.heart_rate.red.below: must be less than yellow.below (50)",
        ),
        (
            {"rules.spo2.red.at_or_below": 95},
            "rules.spo2.red.at_or_below: must be less than yellow.at_or_below (95)",
        ),
        (
            {"rules.heart_rate.yellow.below": 110},
            "rules.heart_rate.yellow.below: must be less than yellow.above (100)",
        ),
        (
            {"rules.heart_rate.red.at_or_above": 130},
            "rules.heart_rate.red.at_or_above: give either above or at_or_above, not both",
        ),
        ({"rules.heart_rate.red.above": float("nan")}, "rules.heart_rate.red.above: Input should be a finite number"),
        ({"rules.heart_rate.yellow.source": None}, "rules.heart_rate.yellow.source: cite the source"),
        ({"rules.body_temperature.unit": "[degF]"}, "rules.body_temperature.unit: must be 'Cel'"),
        ({"rules.pulse": {"unit": "/min"}}, "rules.pulse: unknown metric"),
        ({"rules.heart_rate.red.abvoe": 1}, "rules.heart_rate.red.abvoe: Extra inputs are not permitted"),
        ({"rules.heart_rate.sustain.samples": 0}, "rules.heart_rate.sustain.samples: Input should be greater than or equal to 1"),
        ({"rules.heart_rate.sustain.seconds": -1}, "rules.heart_rate.sustain.seconds: Input should be greater than or equal to 0"),
        ({"rules.heart_rate.clear.margin": 30}, "rules.heart_rate.clear.margin: margin 30 leaves no value clear of both 50 and 100"),
        ({"rules.diastolic_bp.red": None}, "rules.diastolic_bp.red: set a red or a yellow band"),
        ({"news2.red_at": 5}, "news2.red_at: must be greater than yellow_at (5)"),
        ({"news2.min_parameters": 6}, "news2.min_parameters: Input should be less than or equal to 5"),
        ({"data_gap.seconds": 0}, "data_gap.seconds: Input should be greater than 0"),
        ({"version": None}, "version: Field required"),
        ({"version": "has space"}, "version: String should match pattern"),
    ],
)  # fmt: skip
def test_an_invalid_rule_set_is_refused_naming_rule_and_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(RuleSetError, match=r"^rules: ") as caught:
        parse_rule_set(rule_data(**changes))
    assert message in str(caught.value)


def test_a_bad_file_names_the_file_rule_and_field(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule_data(**{"rules.heart_rate.red.above": 90})))
    with pytest.raises(RuleSetError) as caught:
        load_rule_set(path)
    assert str(caught.value).startswith(f"{path}: rules.heart_rate.red.above: must be greater")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        ("", "expected a mapping"),
    ],
)
def test_an_unparseable_file_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(RuleSetError, match=message):
        load_rule_set(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError, match="cannot read the rule file"):
        load_rule_set(tmp_path / "absent.yaml")


def test_the_default_path_is_the_shipped_file() -> None:
    assert DEFAULT_RULES_FILE.name == "rules.yaml" and load_rule_set() == RULES


def test_patient_bands_use_the_same_ordering_checks() -> None:
    with pytest.raises(ValueError, match=r"red.above: must be greater than yellow.above \(130\)"):
        MetricBands.model_validate({"red": {"above": 125}, "yellow": {"above": 130}})
