"""Threshold bands: one severity's cut-offs below and above the normal range, inclusivity explicit.

Shared by the rule file and by per-patient thresholds, so both are validated the same way.
"""

from __future__ import annotations

from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FieldError(ValueError):
    """A validation failure about one field, named by its dotted path relative to the model."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Strict(BaseModel):
    """Base of every configuration model: immutable, unknown keys rejected, no NaN/Infinity."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Cut(NamedTuple):
    """One threshold: the value, whether the value itself is beyond it, the field that set it."""

    value: float
    inclusive: bool
    field: str

    def text(self, unit: str, *, high: bool) -> str:
        """Render as the issue text does, e.g. '> 120 /min' or '≤ 91 %'."""
        op = ("≥" if self.inclusive else ">") if high else ("≤" if self.inclusive else "<")
        return f"{op} {self.value:g} {unit}".rstrip()


class Band(Strict):
    """One severity's thresholds; `above` is >, `at_or_above` ≥, `below` <, `at_or_below` ≤."""

    above: float | None = None
    at_or_above: float | None = None
    below: float | None = None
    at_or_below: float | None = None
    source: str | None = Field(None, description="Citation of the guideline behind the band.")

    @model_validator(mode="after")
    def _one_cut_per_side(self) -> Band:
        if self.above is not None and self.at_or_above is not None:
            raise FieldError("at_or_above", "give either above or at_or_above, not both")
        if self.below is not None and self.at_or_below is not None:
            raise FieldError("at_or_below", "give either below or at_or_below, not both")
        if self.high is None and self.low is None:
            raise FieldError("above", "a band needs above, at_or_above, below or at_or_below")
        return self

    @property
    def high(self) -> Cut | None:
        """The cut on the high side, if any."""
        if self.above is not None:
            return Cut(self.above, False, "above")
        if self.at_or_above is not None:
            return Cut(self.at_or_above, True, "at_or_above")
        return None

    @property
    def low(self) -> Cut | None:
        """The cut on the low side, if any."""
        if self.below is not None:
            return Cut(self.below, False, "below")
        if self.at_or_below is not None:
            return Cut(self.at_or_below, True, "at_or_below")
        return None


def check_bands(red: Band | None, yellow: Band | None) -> None:
    """Reject bands where red would be as easy to reach as yellow, or low and high overlap."""
    if red is None and yellow is None:
        raise FieldError("red", "set a red or a yellow band")
    _check_side(red.high if red else None, yellow.high if yellow else None, high=True)
    _check_side(red.low if red else None, yellow.low if yellow else None, high=False)
    named = (("red", red), ("yellow", yellow))
    lows = [(n, b.low) for n, b in named if b is not None and b.low is not None]
    highs = [(n, b.high) for n, b in named if b is not None and b.high is not None]
    for low_name, low in lows:
        for high_name, high in highs:
            if not low.value < high.value:
                raise FieldError(
                    f"{low_name}.{low.field}",
                    f"must be less than {high_name}.{high.field} ({high.value:g})",
                )


def _check_side(red: Cut | None, yellow: Cut | None, *, high: bool) -> None:
    if red is None or yellow is None:
        return
    stricter = red.value > yellow.value if high else red.value < yellow.value
    if not stricter:
        relation = "greater than" if high else "less than"
        raise FieldError(
            f"red.{red.field}", f"must be {relation} yellow.{yellow.field} ({yellow.value:g})"
        )


def innermost(red: Band | None, yellow: Band | None) -> tuple[Cut | None, Cut | None]:
    """Return the (low, high) cuts that bound the green range: yellow's where set, else red's."""
    low = (yellow.low if yellow else None) or (red.low if red else None)
    high = (yellow.high if yellow else None) or (red.high if red else None)
    return low, high


def check_margin(red: Band | None, yellow: Band | None, margin: float, *, field: str) -> None:
    """Reject a hysteresis margin that leaves no value clear of both thresholds."""
    low, high = innermost(red, yellow)
    if low is not None and high is not None and not low.value + margin < high.value - margin:
        raise FieldError(
            field,
            f"margin {margin:g} leaves no value clear of both {low.value:g} and {high.value:g}",
        )
