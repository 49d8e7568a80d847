"""Garmin Health API push and ping: samples, lifecycle notices, pull requests.

Field names are the reference's (§4, all secondary: RADAR-base and Open Wearables receivers).
Payloads are the reference's examples where it gives one; others are constructed from its field
tables and say so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.ingest.vendors.common import PayloadError
from services.ingest.vendors.garmin import (
    GarminDeregistration,
    GarminPermissionsChange,
    GarminPull,
    map_push,
    map_push_body,
)
from shared.vitals import Metric

USER = "4aacafe8-2427-4c25-9f9c-9592d0c06768"
START = 1535328000  # 2018-08-27T00:00:00Z

# §4.2 illustrative push (values from RADAR's GarminHealthData.kt).
PULSEOX = {
    "pulseox": [
        {
            "userId": USER,
            "summaryId": "example1234-spo2OnDemand",
            "calendarDate": "2018-08-27",
            "startTimeInSeconds": START,
            "startTimeOffsetInSeconds": 3600,
            "durationInSeconds": 0,
            "timeOffsetSpo2Values": {"55740": 93},
            "onDemand": True,
        }
    ]
}


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def daily(samples: Any, **extra: Any) -> dict[str, Any]:
    """Construct a dailies record (§4.2 table; RADAR's example data uses 15-s spacing)."""
    return {
        "userId": USER,
        "summaryId": "x-daily-1",
        "calendarDate": "2018-08-27",
        "startTimeInSeconds": START,
        "startTimeOffsetInSeconds": -10800,
        "durationInSeconds": 86400,
        "restingHeartRateInBeatsPerMinute": 58,
        "averageStressLevel": 30,  # OW spelling; RADAR's is averageStresslevel: both are ignored
        "timeOffsetHeartRateSamples": samples,
        **extra,
    }


def test_the_documented_pulse_ox_push_is_one_spo2_sample_at_start_plus_offset() -> None:
    batch = map_push("pulseox", PULSEOX)
    (sample,) = batch.samples
    assert (sample.vendor_user, sample.metric, sample.value, sample.unit) == (
        USER,
        Metric.SPO2,
        93.0,
        "%",
    )
    # The local offset (startTimeOffsetInSeconds) does not move the instant.
    assert sample.measured_at == at(START + 55740)
    assert sample.source_id == "example1234-spo2OnDemand:55740:spo2"
    assert batch.notices == [] and batch.pulls == []


def test_every_heart_rate_sample_in_a_daily_becomes_its_own_sample() -> None:
    batch = map_push("dailies", {"dailies": [daily({"0": 61, "15": 62, "30": 0, "45": 64.5})]})
    assert [(s.measured_at, s.value) for s in batch.samples] == [
        (at(START), 61.0),
        (at(START + 15), 62.0),
        (at(START + 45), 64.5),  # 0 is "no reading" and is skipped
    ]
    assert {s.source_id for s in batch.samples} == {
        "x-daily-1:0:heart_rate",
        "x-daily-1:15:heart_rate",
        "x-daily-1:45:heart_rate",
    }


def test_a_resent_summary_maps_to_the_same_source_ids() -> None:
    first = map_push("dailies", {"dailies": [daily({"0": 61, "15": 62})]})
    updated = map_push("dailies", {"dailies": [daily({"0": 61, "15": 62, "30": 63})]})
    assert {s.source_id for s in first.samples} < {s.source_id for s in updated.samples}


def test_a_day_of_fifteen_second_heart_rate_maps_every_sample() -> None:
    # Speed is measured by `make bench-ingest`, not here; this guards the hot path's output.
    day = {str(offset): 60 + offset % 40 for offset in range(0, 86400, 15)}
    batch = map_push("dailies", {"dailies": [daily(day)]})
    assert len(batch.samples) == 5760
    assert len({s.source_id for s in batch.samples}) == 5760
    assert [(s.measured_at, s.value) for s in (batch.samples[0], batch.samples[-1])] == [
        (at(START), 60.0),
        (at(START + 86385), 60.0 + 86385 % 40),
    ]


def test_an_epoch_is_its_mean_heart_rate_at_the_bucket_start() -> None:
    # Constructed per §4.2: 15-minute buckets (OW wellness_import.py).
    epoch = {
        "userId": USER,
        "summaryId": "x-epoch-1",
        "startTimeInSeconds": START + 900,
        "durationInSeconds": 900,
        "meanHeartRateInBeatsPerMinute": 77,
        "maxHeartRateInBeatsPerMinute": 95,
        "activityType": "WALKING",
    }
    (sample,) = map_push("epochs", {"epochs": [epoch]}).samples
    assert (sample.metric, sample.value, sample.measured_at) == (
        Metric.HEART_RATE,
        77.0,
        at(START + 900),
    )
    assert sample.source_id == "x-epoch-1:0:heart_rate"


@pytest.mark.parametrize(
    ("time_fields", "expected"),
    [
        (
            {"measurementTimeInSeconds": START + 60, "measurementTimeOffsetInSeconds": 3600},
            START + 60,
        ),
        ({"startTimeInSeconds": START + 120}, START + 120),  # RADAR / OW fallback field
    ],
)
def test_a_blood_pressure_reading_is_systolic_diastolic_and_pulse(
    time_fields: dict[str, int], expected: int
) -> None:
    record = {
        "userId": USER,
        "summaryId": "x-bp-1",
        "systolic": 128,
        "diastolic": 84,
        "pulse": 71,
        "sourceType": "MANUAL",
        **time_fields,
    }
    samples = map_push("bloodPressures", {"bloodPressures": [record]}).samples
    assert [(s.metric, s.value, s.unit) for s in samples] == [
        (Metric.SYSTOLIC_BP, 128.0, "mmHg"),
        (Metric.DIASTOLIC_BP, 84.0, "mmHg"),
        (Metric.HEART_RATE, 71.0, "bpm"),
    ]
    assert {s.measured_at for s in samples} == {at(expected)}
    assert samples[0].source_id == "x-bp-1:0:systolic_bp"


@pytest.mark.parametrize("key", ["timeOffsetEpochToBreaths", "timeOffsetRespirationValues"])
@pytest.mark.parametrize("summary_type", ["allDayRespiration", "respiration"])
def test_respiration_reads_either_documented_offset_map(key: str, summary_type: str) -> None:
    record = {
        "userId": USER,
        "summaryId": "x-resp-1",
        "startTimeInSeconds": START,
        key: {"60": 14.5},
    }
    (sample,) = map_push(summary_type, {"allDayRespiration": [record]}).samples
    assert (sample.metric, sample.value, sample.unit) == (
        Metric.RESPIRATORY_RATE,
        14.5,
        "breaths/min",
    )
    assert sample.measured_at == at(START + 60)


def test_a_health_snapshot_maps_heart_rate_spo2_and_respiration_but_not_stress() -> None:
    # Constructed per §4.2: summaries[] with epochSummaries; offsetStartTimeInSeconds is the local offset.
    snapshot = {
        "userId": USER,
        "summaryId": "x-snap-1",
        "startTimeInSeconds": START,
        "offsetStartTimeInSeconds": 7200,
        "durationInSeconds": 120,
        "summaries": [
            {
                "summaryType": "heart_rate",
                "minValue": 60,
                "maxValue": 66,
                "avgValue": 63,
                "epochSummaries": {"0": 60, "5": 66},
            },
            {"summaryType": "spo2", "epochSummaries": {"0": 97}},
            {"summaryType": "respiration", "epochSummaries": {"0": 15}},
            {"summaryType": "stress", "epochSummaries": {"0": 25}},
        ],
    }
    samples = map_push("healthSnapshot", {"healthSnapshot": [snapshot]}).samples
    assert [(s.metric, s.value, s.measured_at) for s in samples] == [
        (Metric.HEART_RATE, 60.0, at(START)),
        (Metric.HEART_RATE, 66.0, at(START + 5)),
        (Metric.SPO2, 97.0, at(START)),
        (Metric.RESPIRATORY_RATE, 15.0, at(START)),
    ]


def test_lifecycle_pushes_become_typed_notices() -> None:
    # deregistrations: OW test_garmin_webhook_task.py; userPermissionsChange: §4.2 lifecycle keys.
    deregistration = map_push(
        "deregistrations", {"deregistrations": [{"userId": USER, "userAccessToken": "t"}]}
    )
    permissions = map_push(
        "userPermissionsChange",
        {
            "userPermissionsChange": [
                {
                    "userId": USER,
                    "permissions": ["ACTIVITY_EXPORT", "HEALTH_EXPORT"],
                    "changeTimeInSeconds": START,
                }
            ]
        },
    )
    assert deregistration.notices == [GarminDeregistration(USER)]
    assert permissions.notices == [
        GarminPermissionsChange(USER, ("ACTIVITY_EXPORT", "HEALTH_EXPORT"))
    ]
    assert deregistration.samples == [] and permissions.samples == []


def test_a_ping_becomes_a_pull_request_for_the_callback() -> None:
    # §4.1 ping example (Open Wearables garmin_webhooks.py docstring); query parameters unconfirmed.
    url = "https://apis.garmin.com/wellness-api/rest/dailies?uploadStartTimeInSeconds=1&uploadEndTimeInSeconds=2&token=XXXXX"
    batch = map_push("dailies", {"dailies": [{"userId": USER, "callbackURL": url}]})
    assert batch.pulls == [GarminPull(USER, "dailies", url)]
    assert batch.samples == []


@pytest.mark.parametrize(
    "url",
    [
        "http://apis.garmin.com/wellness-api/rest/dailies?token=x",  # no TLS
        "https://apis.garmin.com.evil.example/wellness-api/rest/dailies",
        "https://evil.example/?h=apis.garmin.com",
        "https://user@apis.garmin.com/wellness-api/rest/dailies",
        "https://apis.garmin.com:8443/wellness-api/rest/dailies",
        "https://[::1/x",
    ],
)
def test_a_callback_outside_garmins_api_host_is_refused(url: str) -> None:
    # Following a callback sends the user's token, so it must never leave apis.garmin.com.
    with pytest.raises(PayloadError) as caught:
        map_push("dailies", {"dailies": [{"userId": USER, "callbackURL": url}]})
    assert caught.value.field == "dailies[0].callbackURL"


def test_a_type_we_do_not_carry_is_counted_not_refused() -> None:
    batch = map_push(
        "sleeps",
        {"sleeps": [{"userId": USER, "summaryId": "s"}, {"userId": USER, "summaryId": "t"}]},
    )
    assert batch.samples == [] and batch.ignored == {"sleeps": 2}


def test_a_body_with_several_types_maps_them_all_and_counts_unknown_ones() -> None:
    body = {**PULSEOX, "dailies": [daily({"0": 61})], "newThing": [{}], "stressDetails": [{}]}
    batch = map_push_body(body)
    assert sorted(s.metric for s in batch.samples) == [Metric.HEART_RATE, Metric.SPO2]
    assert batch.ignored == {"newThing": 1, "stressDetails": 1}


def test_a_per_type_push_maps_the_other_types_in_its_body_too() -> None:
    # Overlapping backfills can mix types in one body (vendor-formats §4.2): none is dropped.
    body = {"dailies": [daily({"0": 61})], **PULSEOX, "newThing": [{}], "sleeps": [{}]}
    batch = map_push("dailies", body)
    assert sorted(s.metric for s in batch.samples) == [Metric.HEART_RATE, Metric.SPO2]
    assert batch.ignored == {"newThing": 1, "sleeps": 1}


@pytest.mark.parametrize(
    ("summary_type", "body", "field"),
    [
        ("nonsense", {"nonsense": []}, "nonsense"),
        ("dailies", {"epochs": []}, "dailies"),
        ("pulseox", {"pulseox": {}}, "pulseox"),
        ("dailies", {"dailies": ["x"]}, "dailies[0]"),
        (
            "dailies",
            {
                "dailies": [
                    {k: v for k, v in daily({}).items() if k != "startTimeInSeconds"}
                    | {"timeOffsetHeartRateSamples": {"0": 60}}
                ]
            },
            "dailies[0].startTimeInSeconds",
        ),
        (
            "dailies",
            {"dailies": [daily({"0": 60}, startTimeInSeconds="1535328000")]},
            "dailies[0].startTimeInSeconds",
        ),
        (
            "dailies",
            {"dailies": [daily({"abc": 60})]},
            'dailies[0].timeOffsetHeartRateSamples["abc"]',
        ),
        (
            "dailies",
            {"dailies": [daily({"15": "60"})]},
            'dailies[0].timeOffsetHeartRateSamples["15"]',
        ),
        (
            "dailies",
            {"dailies": [daily({"15": True})]},
            'dailies[0].timeOffsetHeartRateSamples["15"]',
        ),
        ("dailies", {"dailies": [daily([60, 61])]}, "dailies[0].timeOffsetHeartRateSamples"),
        (
            "dailies",
            {"dailies": [daily({"0": 60}, startTimeInSeconds=10**20)]},
            'dailies[0].timeOffsetHeartRateSamples["0"]',
        ),
        (
            "pulseox",
            {"pulseox": [{**PULSEOX["pulseox"][0], "summaryId": None}]},
            "pulseox[0].summaryId",
        ),
        (
            "userPermissionsChange",
            {"userPermissionsChange": [{"userId": USER, "permissions": "ALL"}]},
            "userPermissionsChange[0].permissions",
        ),
        ("deregistrations", {"deregistrations": [{}]}, "deregistrations[0].userId"),
        (
            "bloodPressures",
            {"bloodPressures": [{"userId": USER, "summaryId": "b", "systolic": 120}]},
            "bloodPressures[0].startTimeInSeconds",
        ),
        (
            "healthSnapshot",
            {
                "healthSnapshot": [
                    {
                        "userId": USER,
                        "summaryId": "h",
                        "startTimeInSeconds": START,
                        "summaries": [{"epochSummaries": {}}],
                    }
                ]
            },
            "healthSnapshot[0].summaries[0].summaryType",
        ),
    ],
)
def test_a_malformed_push_names_the_culprit(
    summary_type: str, body: dict[str, Any], field: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        map_push(summary_type, body)
    assert caught.value.field == field
