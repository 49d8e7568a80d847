"""Inputs JSON allows but no reading can hold: an integer too large for a float and a lone UTF-16
surrogate in a string. Every mapper answers PayloadError naming the field (the routes' 422, the
pulls' dead letter), never an OverflowError or UnicodeEncodeError (a 500)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from services.ingest.vendors import apple_health, fhir, fitbit, garmin, google_health
from services.ingest.vendors.common import PayloadError
from services.ingest.vendors.wire import decode

HUGE = "1" + "0" * 400
LONE = '"\\ud800"'  # JSON text of a lone high surrogate: json.loads accepts it
NO_OFFSET = timedelta(0)


def garmin_daily(summary_id: str = '"s1"', bpm: str = "60", start: str = "1714550400") -> str:
    return (
        f'{{"dailies":[{{"userId":"u1","summaryId":{summary_id},"startTimeInSeconds":{start},'
        f'"timeOffsetHeartRateSamples":{{"0":{bpm}}}}}]}}'
    )


def garmin_bp(systolic: str) -> str:
    return (
        '{"bloodPressures":[{"userId":"u1","summaryId":"bp1","measurementTimeInSeconds":1714550400,'
        f'"systolic":{systolic},"diastolic":80}}]}}'
    )


def hk(value: str = "60", uuid: str = '"x1"') -> str:
    return (
        '[{"type":"HKQuantityTypeIdentifierHeartRate","unit":"count/min",'
        f'"startDate":"2024-05-01T09:00:00Z","value":{value},"uuid":{uuid}}}]'
    )


def hae(qty: str = "0.97", source: str = '"Apple Watch"') -> str:
    return (
        '{"data":{"metrics":[{"name":"blood_oxygen_saturation","units":"%","data":'
        f'[{{"date":"2024-05-01 09:00:00 -0300","qty":{qty},"source":{source}}}]}}]}}}}'
    )


def fitbit_heart(bpm: str) -> str:
    return (
        '{"activities-heart":[{"dateTime":"2024-05-01","value":{}}],'
        f'"activities-heart-intraday":{{"dataset":[{{"time":"10:00:00","value":{bpm}}}]}}}}'
    )


def fitbit_glucose(value: str = "110", kind: str = '"SMBG"') -> str:
    return (
        '[{"date":"2024-05-01","values":[{"dateTime":"2024-05-01T08:30:00",'
        f'"value":{value},"measurementType":{kind}}}]}}]'
    )


def google_hr(bpm: str = "60", name: str = '"p1"') -> str:
    return (
        f'{{"dataPoints":[{{"name":{name},"heartRate":{{"beatsPerMinute":{bpm},'
        '"sampleTime":{"physicalTime":"2024-05-01T12:00:00Z"}}}]}'
    )


def fhir_hr(value: str = "60", obs_id: str = '"o1"') -> str:
    return (
        f'{{"resourceType":"Observation","id":{obs_id},"status":"final",'
        '"subject":{"reference":"Patient/p1"},'
        '"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},'
        '"effectiveDateTime":"2024-05-01T09:00:00Z",'
        f'"valueQuantity":{{"value":{value},"system":"http://unitsofmeasure.org","code":"/min"}}}}'
    )


MAPPERS: dict[str, Callable[[Any], object]] = {
    "garmin": garmin.map_push_body,
    "apple": lambda body: apple_health.map_apple(body, vendor_user="dev1"),
    "fitbit-heart": lambda body: fitbit.map_heart_rate_intraday(
        body, owner_id="A1", utc_offset=NO_OFFSET
    ),
    "fitbit-glucose": lambda body: fitbit.map_glucose(
        body, owner_id="A1", utc_offset=NO_OFFSET, unit="mg/dL"
    ),
    "google": lambda body: google_health.map_data_points(body, health_user_id="u1"),
    "fhir": fhir.map_fhir,
}

CASES = [
    ("garmin", garmin_daily(bpm=HUGE), 'dailies[0].timeOffsetHeartRateSamples["0"]', "range"),
    ("garmin", garmin_daily(start=HUGE), "dailies[0].startTimeInSeconds", "range"),
    ("garmin", garmin_bp(HUGE), "bloodPressures[0].systolic", "range"),
    ("garmin", garmin_daily(summary_id=LONE), "dailies[0].summaryId", "Unicode"),
    ("apple", hk(value=HUGE), "[0].value", "range"),
    ("apple", hk(uuid=LONE), "[0].uuid", "Unicode"),
    ("apple", hae(qty=HUGE), "data.metrics[0].data[0].qty", "range"),
    ("apple", hae(source=LONE), "data.metrics[0].data[0].source", "Unicode"),
    ("fitbit-heart", fitbit_heart(HUGE), "activities-heart-intraday.dataset[0].value", "range"),
    ("fitbit-glucose", fitbit_glucose(value=HUGE), "[0].values[0].value", "range"),
    ("fitbit-glucose", fitbit_glucose(kind=LONE), "[0].values[0].measurementType", "Unicode"),
    ("google", google_hr(bpm=HUGE), "dataPoints[0].heartRate.beatsPerMinute", "range"),
    ("google", google_hr(name=LONE), "dataPoints[0].name", "Unicode"),
    ("fhir", fhir_hr(value=HUGE), "valueQuantity.value", "range"),
    ("fhir", fhir_hr(obs_id=LONE), "id", "Unicode"),
]


@pytest.mark.parametrize(("mapper", "body", "field", "problem"), CASES)
def test_a_huge_integer_or_a_lone_surrogate_is_a_payload_error_naming_the_field(
    mapper: str, body: str, field: str, problem: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        MAPPERS[mapper](decode(body.encode()))
    assert caught.value.field == field
    assert problem in caught.value.message


@pytest.mark.parametrize(
    ("mapper", "body"),
    [
        ("garmin", garmin_daily(summary_id='"s-\u00e9\u00df-\U0001f600"')),
        ("apple", hk(uuid='"\\ud83d\\ude00"')),  # a surrogate *pair* is one valid character
    ],
)
def test_non_ascii_ids_that_are_valid_unicode_still_map(mapper: str, body: str) -> None:
    assert MAPPERS[mapper](decode(body.encode()))
