"""The rule set: per-metric bands, persistence and hysteresis, NEWS2 and data-gap settings.

Loaded from a versioned YAML file and validated up front: a bad file is refused with a message that
names the rule and the field, e.g. "rules.heart_rate.red.above: must be greater than yellow.above".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, ValidationError, model_validator

from services.rules.domain.bands import Band, FieldError, Strict, check_bands, check_margin
from services.rules.errors import RulesError
from shared.vitals import CATALOG, Metric

DEFAULT_RULES_FILE = Path(__file__).resolve().parent.parent / "rules.yaml"

Seconds = Annotated[float, Field(ge=0)]
Version = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
]


class RuleSetError(RulesError):
    """The rule file is unreadable or invalid; the message names the rule and the field."""


class Sustain(Strict):
    """A band holds only once `samples` consecutive readings in it span at least `seconds`."""

    seconds: Seconds = 0.0
    samples: int = Field(1, ge=1, le=100)


class Clear(Strict):
    """An episode resolves once `samples` consecutive readings, spanning at least `seconds`, lie
    `margin` or more inside the green range (hysteresis)."""

    margin: float = Field(0.0, ge=0)
    seconds: Seconds = 0.0
    samples: int = Field(1, ge=1, le=100)


class MetricRule(Strict):
    """Bands of one metric, in its canonical unit, and how long they must hold or stay clear."""

    unit: str
    red: Band | None = None
    yellow: Band | None = None
    sustain: Sustain = Sustain()
    clear: Clear = Clear()
    data_gap_seconds: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _coherent(self) -> MetricRule:
        check_bands(self.red, self.yellow)
        check_margin(self.red, self.yellow, self.clear.margin, field="clear.margin")
        for name, band in (("red", self.red), ("yellow", self.yellow)):
            if band is not None and not (band.source or "").strip():
                raise FieldError(f"{name}.source", "cite the source of the band")
        return self


class News2Rule(Strict):
    """NEWS2-style aggregate over the vitals that arrived within a window (RCP 2017)."""

    enabled: bool = True
    window_seconds: float = Field(gt=0)
    min_parameters: int = Field(3, ge=1, le=5)
    yellow_at: int = Field(5, ge=1, le=20)
    red_at: int = Field(7, ge=1, le=20)
    single_parameter_3: bool = Field(True, description="Any one parameter scoring 3 is yellow.")
    sustain: Sustain = Sustain()
    clear: Clear = Clear()
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _coherent(self) -> News2Rule:
        if self.red_at <= self.yellow_at:
            raise FieldError("red_at", f"must be greater than yellow_at ({self.yellow_at})")
        if self.clear.margin > self.yellow_at - 1:
            raise FieldError(
                "clear.margin", f"must be at most yellow_at - 1 ({self.yellow_at - 1})"
            )
        return self


class DataGap(Strict):
    """How long a patient's stream may stay silent while an episode is open."""

    seconds: float = Field(gt=0)


class RuleSet(Strict):
    """Every rule the engine applies, under one version recorded in each alert."""

    version: Version
    data_gap: DataGap
    news2: News2Rule
    rules: dict[Metric, MetricRule] = Field(min_length=1)

    @model_validator(mode="after")
    def _canonical_units(self) -> RuleSet:
        for metric, rule in self.rules.items():
            unit = CATALOG[metric].unit
            if rule.unit != unit:
                raise FieldError(
                    f"rules.{metric.value}.unit", f"must be {unit!r}, canonical for {metric.value}"
                )
        return self


def parse_rule_set(data: object, *, source: str = "rules") -> RuleSet:
    """Validate already-parsed YAML/JSON data as a rule set, or raise RuleSetError."""
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        raise RuleSetError(f"{source}: {describe_validation_error(exc)}") from None


def load_rule_set(path: str | Path = DEFAULT_RULES_FILE) -> RuleSet:
    """Read and validate a YAML rule file, or raise RuleSetError naming the rule and field."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except OSError as exc:
        raise RuleSetError(f"{path}: cannot read the rule file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise RuleSetError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise RuleSetError(f"{path}: expected a mapping with version, data_gap, news2 and rules")
    return parse_rule_set(data, source=str(path))


def describe_validation_error(exc: ValidationError) -> str:
    """Render pydantic errors as 'dotted.path: message', one per problem, joined by '; '."""
    return "; ".join(_describe(error) for error in exc.errors())


def _describe(error: Mapping[str, Any]) -> str:
    path = [str(part) for part in error["loc"] if part != "[key]"]
    cause = (error.get("ctx") or {}).get("error")
    message = str(error["msg"])
    if isinstance(cause, FieldError):
        path.append(cause.field)
        message = cause.message
    elif error["type"] == "enum" and "[key]" in error["loc"]:
        message = f"unknown metric; known: {', '.join(m.value for m in Metric)}"
    return f"{'.'.join(path) or '(top level)'}: {message}"
