"""Normalizing submitted samples into canonical readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.ingest.domain import SubmittedReading, normalize
from services.ingest.errors import InvalidReadingError
from shared.vitals import Metric

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SKEW = timedelta(minutes=5)


def sample(**overrides: object) -> SubmittedReading:
    fields: dict[str, object] = {
        "patient_id": "pt-1",
        "metric": Metric.HEART_RATE,
        "value": 130.0,
        "unit": "bpm",
        "measured_at": NOW - timedelta(seconds=30),
        "source": "api",
        "source_id": None,
    }
    fields.update(overrides)
    return SubmittedReading(**fields)  # type: ignore[arg-type]


def test_a_valid_sample_becomes_a_canonical_reading() -> None:
    reading = normalize(sample(), received_at=NOW, max_future_skew=SKEW)
    assert (reading.value, reading.unit, reading.code) == (130.0, "/min", "8867-4")
    assert reading.received_at == NOW and reading.measured_at == NOW - timedelta(seconds=30)


def test_the_same_vendor_sample_always_gets_the_same_id() -> None:
    first = normalize(sample(), received_at=NOW, max_future_skew=SKEW)
    retry = normalize(sample(), received_at=NOW + timedelta(minutes=3), max_future_skew=SKEW)
    assert first.reading_id == retry.reading_id


@pytest.mark.parametrize(
    "change",
    [
        {"patient_id": "pt-2"},
        {"metric": Metric.RESPIRATORY_RATE, "value": 30.0, "unit": "/min"},
        {"measured_at": NOW - timedelta(seconds=31)},
        {"source": "garmin"},
        {"source_id": "abc"},
    ],
)
def test_a_different_sample_gets_a_different_id(change: dict[str, object]) -> None:
    base = normalize(sample(), received_at=NOW, max_future_skew=SKEW)
    other = normalize(sample(**change), received_at=NOW, max_future_skew=SKEW)
    assert other.reading_id != base.reading_id


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"unit": "mg/dL"}, "unit"),
        ({"value": 0.0}, "value"),
        ({"value": 400.0}, "value"),
        ({"metric": Metric.BLOOD_GLUCOSE, "value": -1.0, "unit": "mg/dL"}, "value"),
        ({"measured_at": NOW + timedelta(minutes=5, seconds=1)}, "measured_at"),
    ],
)
def test_invalid_samples_name_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidReadingError) as info:
        normalize(sample(**change), received_at=NOW, max_future_skew=SKEW)
    assert info.value.field == field


def test_slight_clock_skew_into_the_future_is_tolerated() -> None:
    reading = normalize(
        sample(measured_at=NOW + timedelta(minutes=4)), received_at=NOW, max_future_skew=SKEW
    )
    assert reading.measured_at > NOW
