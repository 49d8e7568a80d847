"""Apple HealthKit data via Health Auto Export (HAE) REST JSON or HealthKit-style sample arrays.

HAE shapes and names are the reference's (§5.2: HAE wiki and the vendor's server); HealthKit
identifiers and units are §5.3 (developer.apple.com); the sample-array wire format is our own
companion app's (§5.4), so those payloads are constructed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.ingest.vendors.apple_health import map_apple, parse_apple_date
from services.ingest.vendors.common import PayloadError
from shared.vitals import Metric

USER = "device-key-7"

# §5.2 doc example (HAE "API Export - JSON Format").
HAE_HEART = {
    "data": {
        "metrics": [
            {
                "name": "heart_rate",
                "units": "count/min",
                "data": [
                    {
                        "date": "2024-02-06 14:30:00 -0800",
                        "Min": 65,
                        "Avg": 72,
                        "Max": 85,
                        "source": "Apple Watch",
                    }
                ],
            }
        ],
        "workouts": [],
    }
}


def hae(name: str, units: str, *points: dict[str, Any]) -> dict[str, Any]:
    return {"data": {"metrics": [{"name": name, "units": units, "data": list(points)}]}}


def test_the_documented_hae_heart_rate_point_maps_to_its_average() -> None:
    result = map_apple(HAE_HEART, vendor_user=USER)
    (sample,) = result.samples
    assert (sample.metric, sample.value, sample.unit) == (Metric.HEART_RATE, 72.0, "count/min")
    assert sample.measured_at == datetime(2024, 2, 6, 22, 30, tzinfo=UTC)
    assert sample.source_id == f"{USER}:heart_rate:2024-02-06T22:30:00+00:00:heart_rate:Apple Watch"
    assert result.skipped == {}


@pytest.mark.parametrize(
    ("name", "units", "point", "expected"),
    [
        # The brief's HAE date example, with a -03:00 offset.
        (
            "heart_rate",
            "bpm",
            {"date": "2024-02-06 14:30:00 -0300", "qty": 80},
            [(Metric.HEART_RATE, 80.0, "bpm")],
        ),
        (
            "blood_oxygen_saturation",
            "%",
            {"date": "2024-02-06 14:30:00 -0300", "qty": 97},
            [(Metric.SPO2, 97.0, "%")],
        ),
        (
            "blood_oxygen_saturation",
            "%",
            {"date": "2024-02-06 14:30:00 -0300", "qty": 0.97},
            [(Metric.SPO2, 97.0, "%")],
        ),
        (
            "respiratory_rate",
            "count/min",
            {"date": "2024-02-06 14:30:00 -0300", "qty": 16},
            [(Metric.RESPIRATORY_RATE, 16.0, "count/min")],
        ),
        (
            "blood_glucose",
            "mg/dL",
            {"date": "2024-02-06 14:30:00 -0300", "qty": 104, "mealTime": "Before Meal"},
            [(Metric.BLOOD_GLUCOSE, 104.0, "mg/dL")],
        ),
        (
            "blood_glucose",
            "mmol<180.1558800000541>/L",
            {"date": "2024-02-06 14:30:00 -0300", "qty": 5.8},
            [(Metric.BLOOD_GLUCOSE, 5.8, "mmol/L")],
        ),
        (
            "body_temperature",
            "degF",
            {"date": "2024-02-06 14:30:00 -0300", "qty": 99.1},
            [(Metric.BODY_TEMPERATURE, 99.1, "[degF]")],
        ),
        (
            "body_temperature",
            "degC",
            {"date": "2024-02-06 14:30:00 -0300", "qty": 37.2},
            [(Metric.BODY_TEMPERATURE, 37.2, "degC")],
        ),
        (
            "blood_pressure",
            "mmHg",
            {"date": "2024-02-06 14:30:00 -0300", "systolic": 128, "diastolic": 84},
            [(Metric.SYSTOLIC_BP, 128.0, "mmHg"), (Metric.DIASTOLIC_BP, 84.0, "mmHg")],
        ),
    ],
)
def test_hae_metrics_we_carry_map_to_catalogue_units(
    name: str, units: str, point: dict[str, Any], expected: list[tuple[Metric, float, str]]
) -> None:
    samples = map_apple(hae(name, units, point), vendor_user=USER).samples
    assert [(s.metric, s.value, s.unit) for s in samples] == expected
    assert {s.measured_at for s in samples} == {datetime(2024, 2, 6, 17, 30, tzinfo=UTC)}


def test_blood_pressure_halves_get_distinct_stable_ids() -> None:
    point = {"date": "2024-02-06 14:30:00 -0300", "systolic": 128, "diastolic": 84}
    first = map_apple(hae("blood_pressure", "mmHg", point), vendor_user=USER).samples
    again = map_apple(hae("blood_pressure", "mmHg", point), vendor_user=USER).samples
    assert len({s.source_id for s in first}) == 2
    assert [s.source_id for s in first] == [s.source_id for s in again]


def test_the_same_instant_in_another_offset_keeps_its_source_id() -> None:
    # Apple batches are re-sent (§5.2); a travelling user's re-export may carry another offset.
    here = map_apple(
        hae("heart_rate", "bpm", {"date": "2024-02-06 14:30:00 -0300", "qty": 80}), vendor_user=USER
    )
    there = map_apple(
        hae("heart_rate", "bpm", {"date": "2024-02-06 19:30:00 +0200", "qty": 80}), vendor_user=USER
    )
    assert here.samples[0].source_id == there.samples[0].source_id


def test_metrics_we_do_not_carry_are_skipped_and_counted() -> None:
    body = {
        "data": {
            "metrics": [
                {
                    "name": "step_count",
                    "units": "count",
                    "data": [{"date": "2024-02-06 14:30:00 -0300", "qty": 10}] * 3,
                },
                {
                    "name": "sleep_analysis",
                    "units": "hr",
                    "data": [{"date": "2024-02-06 00:00:00 -0300", "totalSleep": 7.2}],
                },
                HAE_HEART["data"]["metrics"][0],
            ]
        }
    }
    result = map_apple(body, vendor_user=USER)
    assert [s.metric for s in result.samples] == [Metric.HEART_RATE]
    assert result.skipped == {"step_count": 3, "sleep_analysis": 1}


def test_an_hae_export_with_only_workouts_maps_to_nothing() -> None:
    assert map_apple({"data": {"workouts": []}}, vendor_user=USER).samples == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("heart_rate", "$"),
        ({"data": []}, "data"),
        ({"data": {"metrics": {}}}, "data.metrics"),
        (
            hae("heart_rate", "mmHg", {"date": "2024-02-06 14:30:00 -0300", "Avg": 70}),
            "data.metrics[0].units",
        ),
        (
            hae(
                "blood_oxygen_saturation",
                "count/min",
                {"date": "2024-02-06 14:30:00 -0300", "qty": 97},
            ),
            "data.metrics[0].units",
        ),
        (
            hae("heart_rate", "bpm", {"date": "06/02/2024 14:30", "Avg": 70}),
            "data.metrics[0].data[0].date",
        ),
        (
            hae("heart_rate", "bpm", {"date": "2024-02-06 14:30:00", "Avg": 70}),
            "data.metrics[0].data[0].date",
        ),
        (
            hae("heart_rate", "bpm", {"date": "2024-02-06 14:30:00 -0300", "Min": 60}),
            "data.metrics[0].data[0].qty",
        ),
        (
            hae(
                "respiratory_rate", "count/min", {"date": "2024-02-06 14:30:00 -0300", "qty": "16"}
            ),
            "data.metrics[0].data[0].qty",
        ),
        (
            hae("blood_pressure", "mmHg", {"date": "2024-02-06 14:30:00 -0300", "systolic": 120}),
            "data.metrics[0].data[0].diastolic",
        ),
        ({"data": {"metrics": [{"name": "heart_rate", "units": "bpm"}]}}, "data.metrics[0].data"),
    ],
)
def test_a_malformed_hae_export_names_the_culprit(body: Any, field: str) -> None:
    with pytest.raises(PayloadError) as caught:
        map_apple(body, vendor_user=USER)
    assert caught.value.field == field


def hk(
    kind: str, value: float, unit: str, uuid: str = "U-1", start: str = "2024-01-01T08:00:00Z"
) -> dict[str, Any]:
    """A companion-app sample (§5.4): uuid, type identifier, ISO start/end, value, HKUnit string."""
    return {
        "uuid": uuid,
        "type": f"HKQuantityTypeIdentifier{kind}",
        "value": value,
        "unit": unit,
        "startDate": start,
        "endDate": start,
        "sourceRevision": {"source": {"name": "Apple Watch"}},
        "metadata": {},
    }


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        (hk("HeartRate", 72, "count/min"), (Metric.HEART_RATE, 72.0, "count/min")),
        (hk("OxygenSaturation", 0.97, "%"), (Metric.SPO2, 97.0, "%")),  # HKUnit.percent() is 0-1
        (hk("OxygenSaturation", 96, "%"), (Metric.SPO2, 96.0, "%")),
        (
            hk("BloodGlucose", 5.6, "mmol<180.1558800000541>/L"),
            (Metric.BLOOD_GLUCOSE, 5.6, "mmol/L"),
        ),
        (hk("BloodGlucose", 101, "mg/dL"), (Metric.BLOOD_GLUCOSE, 101.0, "mg/dL")),
        (hk("RespiratoryRate", 15, "count/min"), (Metric.RESPIRATORY_RATE, 15.0, "count/min")),
        (hk("BodyTemperature", 36.9, "degC"), (Metric.BODY_TEMPERATURE, 36.9, "degC")),
        (hk("BodyTemperature", 98.4, "degF"), (Metric.BODY_TEMPERATURE, 98.4, "[degF]")),
    ],
)
def test_healthkit_quantity_samples_map_with_their_uuid(
    sample: dict[str, Any], expected: tuple[Metric, float, str]
) -> None:
    (mapped,) = map_apple([sample], vendor_user=USER).samples
    assert (mapped.metric, mapped.value, mapped.unit) == expected
    assert mapped.source_id == "U-1" and mapped.vendor_user == USER
    assert mapped.measured_at == datetime(2024, 1, 1, 8, tzinfo=UTC)


def test_export_xml_style_dates_are_accepted() -> None:
    # §5.1 export.xml Record attributes: "2024-01-01 00:00:00 +0000".
    (mapped,) = map_apple(
        [hk("HeartRate", 72, "count/min", start="2024-01-01 00:00:00 +0000")], vendor_user=USER
    ).samples
    assert mapped.measured_at == datetime(2024, 1, 1, tzinfo=UTC)


def blood_pressure(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "uuid": "C-1",
        "type": "HKCorrelationTypeIdentifierBloodPressure",
        "startDate": "2024-01-01T08:00:00+01:00",
        "endDate": "2024-01-01T08:00:00+01:00",
        "objects": objects,
    }


def test_a_blood_pressure_correlation_yields_its_systolic_and_diastolic_samples() -> None:
    correlation = blood_pressure(
        [
            hk("BloodPressureSystolic", 131, "mmHg", uuid="S-1", start="2024-01-01T08:00:00+01:00"),
            {
                **hk("BloodPressureDiastolic", 86, "mmHg", start="2024-01-01T08:00:00+01:00"),
                "uuid": None,
            },
            hk("HeartRate", 70, "count/min", uuid="H-1"),  # not part of a BP correlation
        ]
    )
    result = map_apple([correlation, hk("StepCount", 40, "count", uuid="X")], vendor_user=USER)
    assert [(s.metric, s.value, s.unit, s.source_id) for s in result.samples] == [
        (Metric.SYSTOLIC_BP, 131.0, "mmHg", "S-1"),
        (Metric.DIASTOLIC_BP, 86.0, "mmHg", "C-1:diastolic_bp"),  # a child without its own uuid
    ]
    assert {s.measured_at for s in result.samples} == {datetime(2024, 1, 1, 7, tzinfo=UTC)}
    assert result.skipped == {
        "HKQuantityTypeIdentifierHeartRate": 1,
        "HKQuantityTypeIdentifierStepCount": 1,
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([42], "[0]"),
        ([{**hk("HeartRate", 72, "count/min"), "uuid": None}], "[0].uuid"),
        ([hk("HeartRate", 72, "mg/dL")], "[0].unit"),
        ([hk("OxygenSaturation", 0.97, "count/min")], "[0].unit"),
        ([{**hk("HeartRate", 72, "count/min"), "value": None}], "[0].value"),
        ([hk("HeartRate", 72, "count/min", start="2024-01-01T08:00:00")], "[0].startDate"),
        ([{k: v for k, v in hk("HeartRate", 72, "count/min").items() if k != "type"}], "[0].type"),
        ([blood_pressure([]) | {"objects": None}], "[0].objects"),
        (
            [
                blood_pressure(
                    [
                        {
                            "type": "HKQuantityTypeIdentifierBloodPressureSystolic",
                            "value": 120,
                            "unit": "kPa",
                            "startDate": "2024-01-01T08:00:00Z",
                        }
                    ]
                )
            ],
            "[0].objects[0].unit",
        ),
    ],
)
def test_a_malformed_healthkit_array_names_the_culprit(body: Any, field: str) -> None:
    with pytest.raises(PayloadError) as caught:
        map_apple(body, vendor_user=USER)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # HAE and export.xml: "yyyy-MM-dd HH:mm:ss Z" (§5.2, §5.1)
        ("2024-02-06 14:30:00 -0300", datetime(2024, 2, 6, 17, 30, tzinfo=UTC)),
        ("2024-01-01 00:00:00 +0000", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-02-06 14:30:00 +0530", datetime(2024, 2, 6, 9, 0, tzinfo=UTC)),  # half-hour zone
        ("2024-12-31 23:30:00 -0100", datetime(2025, 1, 1, 0, 30, tzinfo=UTC)),  # year rolls over
        ("2024-02-29 23:59:59 +0000", datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)),
        # Odd spellings the date formatter or a hand-made export can produce
        ("2024-02-06 14:30:00 -03:00", datetime(2024, 2, 6, 17, 30, tzinfo=UTC)),
        ("2024-2-6 9:30:00 -0300", datetime(2024, 2, 6, 12, 30, tzinfo=UTC)),
        ("2024-02-06T14:30:00 -0300", datetime(2024, 2, 6, 17, 30, tzinfo=UTC)),
        # ISO 8601 with an offset (HealthKit-style arrays)
        ("2024-02-06T14:30:00Z", datetime(2024, 2, 6, 14, 30, tzinfo=UTC)),
        ("2024-02-06T14:30:00.250+01:00", datetime(2024, 2, 6, 13, 30, 0, 250000, tzinfo=UTC)),
    ],
)
def test_apple_dates_parse_to_the_utc_instant(text: str, expected: datetime) -> None:
    parsed = parse_apple_date(text, "date")
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "2024-02-06 14:30:00",  # no offset: no instant
        "2024-02-30 14:30:00 -0300",
        "2024-02-06 24:00:00 -0300",
        "2024-02-06 14:30:60 -0300",
        "2024-02-06 14:30:00 +2400",
        "0001-01-01 00:00:00 +0100",  # before year 1 in UTC
        "06/02/2024 14:30 -0300",
        "",
    ],
)
def test_impossible_apple_dates_are_a_payload_error_naming_the_field(text: str) -> None:
    with pytest.raises(PayloadError) as raised:
        parse_apple_date(text, "data.metrics[0].data[0].date")
    assert raised.value.field == "data.metrics[0].data[0].date"


def test_the_fast_hae_date_path_agrees_with_strptime() -> None:
    # Every second offset from -12:00 to +14:00 by quarter hours, at a few awkward moments.
    moments = ["2024-02-29 00:00:00", "2024-12-31 23:59:59", "2023-03-26 02:30:00"]
    for moment in moments:
        for quarter in range(-48, 57):
            sign = "-" if quarter < 0 else "+"
            hours, minutes = divmod(abs(quarter) * 15, 60)
            text = f"{moment} {sign}{hours:02d}{minutes:02d}"
            slow = datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z").astimezone(UTC)
            assert parse_apple_date(text, "date") == slow, text
