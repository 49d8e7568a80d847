"""Fitbit Web API: subscriber signature, notifications, follow-up pulls, data mappers.

Payloads are the documented examples in shared/reference/vendor-formats.md §2 unless marked
"constructed"; each says where it comes from.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.ingest.vendors.common import PayloadError
from services.ingest.vendors.fitbit import (
    FitbitNotification,
    FitbitPullKind,
    map_glucose,
    map_heart_rate_intraday,
    map_response,
    map_spo2_intraday,
    map_spo2_summary,
    parse_notifications,
    pulls_for,
    verify_signature,
)
from shared.vitals import Metric

# §2.4 test vector (constructed by the reference, verified there with Python hmac/hashlib/base64).
VECTOR_BODY = (
    b'[{"collectionType":"activities","date":"2024-05-01","ownerId":"GGNJL9","ownerType":"user",'
    b'"subscriptionId":"user-42-activities"},{"collectionType":"body","date":"2024-05-01",'
    b'"ownerId":"GGNJL9","ownerType":"user","subscriptionId":"user-42-body"}]'
)
VECTOR_SECRET = "test-client-secret"
VECTOR_HEADER = "byJzj3X2wpYxoy6TdfJI5fmzpx0="

# §2.3 doc example (classic Fitbit wiki, reused by many public receivers).
DOC_NOTIFICATIONS = (
    b'[{"collectionType":"foods","date":"2010-03-01","ownerId":"228S74","ownerType":"user","subscriptionId":"1234"},\n'
    b' {"collectionType":"foods","date":"2010-03-02","ownerId":"228S74","ownerType":"user","subscriptionId":"1234"},\n'
    b' {"collectionType":"activities","date":"2010-03-01","ownerId":"184X36","ownerType":"user","subscriptionId":"2345"}]'
)

BRT = timedelta(hours=-3)  # the user's UTC offset (America/Sao_Paulo)


def notification(collection: str, owner: str = "GGNJL9") -> FitbitNotification:
    return FitbitNotification(collection, date(2024, 5, 1), owner, "user", "sub-1")


def _signature(body: bytes, secret: str) -> str:
    digest = hmac.new(f"{secret}&".encode(), body, hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def test_the_reference_test_vector_verifies() -> None:
    assert len(VECTOR_BODY) == 245
    assert verify_signature(VECTOR_BODY, VECTOR_HEADER, VECTOR_SECRET)


@pytest.mark.parametrize(
    ("body", "header", "secret"),
    [
        (VECTOR_BODY.replace(b"GGNJL9", b"GGNJL8"), VECTOR_HEADER, VECTOR_SECRET),  # tampered body
        (VECTOR_BODY, VECTOR_HEADER, "other-secret"),  # wrong secret
        (VECTOR_BODY, None, VECTOR_SECRET),  # no header
        (VECTOR_BODY, "", VECTOR_SECRET),
        (VECTOR_BODY, VECTOR_HEADER.replace("=", "%3D"), VECTOR_SECRET),  # URL-encoded header
        # The same JSON re-serialised (json.dumps adds spaces): the check is over the raw bytes.
        (json.dumps(json.loads(VECTOR_BODY)).encode(), VECTOR_HEADER, VECTOR_SECRET),
    ],
)
def test_a_signature_that_does_not_match_the_raw_body_is_refused(
    body: bytes, header: str | None, secret: str
) -> None:
    assert not verify_signature(body, header, secret)


def test_the_key_is_the_secret_with_a_trailing_ampersand() -> None:
    without_ampersand = base64.b64encode(
        hmac.new(VECTOR_SECRET.encode(), VECTOR_BODY, hashlib.sha1).digest()
    ).decode()
    assert not verify_signature(VECTOR_BODY, without_ampersand, VECTOR_SECRET)


def test_a_plus_in_the_header_is_compared_raw_never_url_decoded() -> None:
    body = next(  # constructed: a body whose signature contains "+"
        b for i in range(1000) if "+" in _signature(b := f'[{{"n":{i}}}]'.encode(), "s")
    )
    header = _signature(body, "s")
    assert verify_signature(body, header, "s")
    assert not verify_signature(body, header.replace("+", " "), "s")


def test_the_documented_notification_batch_parses() -> None:
    parsed = parse_notifications(DOC_NOTIFICATIONS)
    assert [(n.collection_type, n.date, n.owner_id) for n in parsed] == [
        ("foods", date(2010, 3, 1), "228S74"),
        ("foods", date(2010, 3, 2), "228S74"),
        ("activities", date(2010, 3, 1), "184X36"),
    ]
    assert parsed[2].owner_type == "user" and parsed[2].subscription_id == "2345"


def test_the_test_vector_body_parses_into_two_notifications() -> None:
    parsed = parse_notifications(VECTOR_BODY)
    assert [(n.collection_type, n.subscription_id) for n in parsed] == [
        ("activities", "user-42-activities"),
        ("body", "user-42-body"),
    ]


GOOD = {
    "collectionType": "sleep",
    "date": "2024-05-01",
    "ownerId": "GGNJL9",
    "ownerType": "user",
    "subscriptionId": "s",
}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"not json", "$"),
        (b'{"collectionType":"sleep"}', "$"),  # an object, not the documented array
        (b"[42]", "[0]"),
        (json.dumps([GOOD, {**GOOD, "ownerId": None}]).encode(), "[1].ownerId"),
        (json.dumps([{**GOOD, "date": "01/05/2024"}]).encode(), "[0].date"),
        (json.dumps([{**GOOD, "date": "2024-02-30"}]).encode(), "[0].date"),
        (json.dumps([{**GOOD, "ownerId": "../../x"}]).encode(), "[0].ownerId"),
        (json.dumps([{**GOOD, "subscriptionId": 1234}]).encode(), "[0].subscriptionId"),
        (
            json.dumps([{k: v for k, v in GOOD.items() if k != "collectionType"}]).encode(),
            "[0].collectionType",
        ),
    ],
)
def test_a_malformed_notification_names_the_culprit(raw: bytes, field: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_notifications(raw)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("collection", "intraday", "expected"),
    [
        (
            "activities",
            True,
            [
                (
                    "heart_rate_intraday",
                    "/1/user/GGNJL9/activities/heart/date/2024-05-01/1d/1sec.json",
                )
            ],
        ),
        ("sleep", True, [("spo2_intraday", "/1/user/GGNJL9/spo2/date/2024-05-01/all.json")]),
        ("sleep", False, [("spo2_summary", "/1/user/GGNJL9/spo2/date/2024-05-01.json")]),
        (
            "body",
            True,
            [
                (
                    "glucose",
                    "/1/user/GGNJL9/health/metrics/glucose/values/2024-05-01/2024-05-01.json",
                )
            ],
        ),
        ("activities", False, []),  # no intraday approval: the daily summary has no samples
        ("foods", True, []),
        ("userRevokedAccess", True, []),
    ],
)
def test_each_collection_pulls_the_inferred_resources(
    collection: str, intraday: bool, expected: list[tuple[str, str]]
) -> None:
    pulls = pulls_for(notification(collection), intraday=intraday)
    assert [(p.kind.value, p.path) for p in pulls] == expected
    assert all(p.owner_id == "GGNJL9" and p.date == date(2024, 5, 1) for p in pulls)


def test_glucose_is_pulled_in_us_units_and_read_as_mg_dl() -> None:
    (pull,) = pulls_for(notification("body"))
    assert pull.accept_language == "en_US"
    samples = map_response(pull, GLUCOSE_RESPONSE, utc_offset=BRT)
    assert {s.unit for s in samples} == {"mg/dL"}


def test_a_revocation_is_recognisable() -> None:
    assert notification("userRevokedAccess").revokes_access
    assert not notification("activities").revokes_access


# Intraday 1min shape per rapids.science fitbit-heartrate examples and the Fitbit reference (§2.5).
HEART_1MIN: dict[str, Any] = {
    "activities-heart": [
        {
            "dateTime": "2019-01-01",
            "value": {
                "customHeartRateZones": [],
                "heartRateZones": [
                    {"caloriesOut": 2.3, "max": 94, "min": 30, "minutes": 1, "name": "Out of Range"}
                ],
                "restingHeartRate": 68,
            },
        }
    ],
    "activities-heart-intraday": {
        "dataset": [{"time": "00:00:00", "value": 64}, {"time": "00:01:00", "value": 63}],
        "datasetInterval": 1,
        "datasetType": "minute",
    },
}
# 1sec: irregular spacing (§2.5, public mocks); a 0 is "no reading". Constructed values.
HEART_1SEC: dict[str, Any] = {
    "activities-heart": [{"dateTime": "2024-05-01", "value": {"restingHeartRate": 60}}],
    "activities-heart-intraday": {
        "dataset": [
            {"time": "23:59:50", "value": 71},
            {"time": "23:59:57", "value": 0},
            {"time": "23:59:59", "value": 73},
        ],
        "datasetInterval": 1,
        "datasetType": "second",
    },
}
# Legacy (2015) shape: summary `value` is a string and zones sit at entry level (Shimmer resource).
HEART_LEGACY: dict[str, Any] = {
    "activities-heart": [{"dateTime": "2015-05-24", "heartRateZones": [], "value": "64.2"}],
    "activities-heart-intraday": {
        "dataset": [{"time": "00:00:00", "value": 66}],
        "datasetInterval": 1,
        "datasetType": "minute",
    },
}


def test_intraday_heart_rate_local_times_become_utc_instants() -> None:
    samples = map_heart_rate_intraday(HEART_1MIN, owner_id="GGNJL9", utc_offset=BRT)
    assert [(s.measured_at, s.value) for s in samples] == [
        (datetime(2019, 1, 1, 3, 0, tzinfo=UTC), 64.0),
        (datetime(2019, 1, 1, 3, 1, tzinfo=UTC), 63.0),
    ]
    assert all(s.metric is Metric.HEART_RATE and s.unit == "bpm" for s in samples)
    assert samples[0].source_id == "GGNJL9:2019-01-01T00:00:00:heart_rate"


def test_one_second_heart_rate_skips_zero_and_crosses_midnight_in_utc() -> None:
    samples = map_heart_rate_intraday(HEART_1SEC, owner_id="GGNJL9", utc_offset=BRT)
    assert [s.measured_at for s in samples] == [
        datetime(2024, 5, 2, 2, 59, 50, tzinfo=UTC),
        datetime(2024, 5, 2, 2, 59, 59, tzinfo=UTC),
    ]


def test_the_legacy_heart_rate_shape_still_maps() -> None:
    (sample,) = map_heart_rate_intraday(HEART_LEGACY, owner_id="A1", utc_offset=timedelta(0))
    assert sample.measured_at == datetime(2015, 5, 24, tzinfo=UTC) and sample.value == 66.0


def test_a_day_without_heart_rate_maps_to_nothing() -> None:
    body = {"activities-heart": [], "activities-heart-intraday": {"dataset": []}}
    assert map_heart_rate_intraday(body, owner_id="A1", utc_offset=BRT) == []


def _with(base: dict[str, Any], dataset: list[Any]) -> dict[str, Any]:
    return {**base, "activities-heart-intraday": {"dataset": dataset}}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "$"),
        ({"activities-heart": HEART_1MIN["activities-heart"]}, "activities-heart-intraday"),
        (
            _with(HEART_1MIN, [{"time": "9:00", "value": 60}]),
            "activities-heart-intraday.dataset[0].time",
        ),
        (
            _with(HEART_1MIN, [{"time": "25:00:00", "value": 60}]),
            "activities-heart-intraday.dataset[0].time",
        ),
        (
            _with(HEART_1MIN, [{"time": "09:00:00", "value": "60"}]),
            "activities-heart-intraday.dataset[0].value",
        ),
        (
            _with(HEART_1MIN, [{"time": "09:00:00", "value": True}]),
            "activities-heart-intraday.dataset[0].value",
        ),
        (
            {**_with(HEART_1MIN, [{"time": "09:00:00", "value": 60}]), "activities-heart": []},
            "activities-heart",
        ),
    ],
)
def test_a_malformed_heart_rate_response_names_the_culprit(body: Any, field: str) -> None:
    with pytest.raises(PayloadError) as caught:
        map_heart_rate_intraday(body, owner_id="A1", utc_offset=BRT)
    assert caught.value.field == field


# §2.5 doc examples (dev.fitbit.com SpO2 reference).
SPO2_INTRADAY = {
    "dateTime": "2021-10-04",
    "minutes": [{"value": 95.7, "minute": "2021-10-04T04:02:17"}],
}
SPO2_SUMMARY = {"dateTime": "2021-10-04", "value": {"avg": 97.5, "min": 94.0, "max": 100.0}}


@pytest.mark.parametrize("body", [SPO2_INTRADAY, [SPO2_INTRADAY]])
def test_spo2_intraday_maps_one_sample_per_minute(body: Any) -> None:
    (sample,) = map_spo2_intraday(body, owner_id="GGNJL9", utc_offset=timedelta(hours=2))
    assert (sample.metric, sample.value, sample.unit) == (Metric.SPO2, 95.7, "%")
    assert sample.measured_at == datetime(2021, 10, 4, 2, 2, 17, tzinfo=UTC)
    assert sample.source_id == "GGNJL9:2021-10-04T04:02:17:spo2"


def test_spo2_without_data_for_the_date_maps_to_nothing() -> None:
    assert map_spo2_intraday({}, owner_id="A1", utc_offset=BRT) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dateTime": "2021-10-04"}, "minutes"),
        (
            {"dateTime": "2021-10-04", "minutes": [{"value": 95.7, "minute": "04:02"}]},
            "minutes[0].minute",
        ),
        (
            [SPO2_INTRADAY, {"minutes": [{"value": None, "minute": "2021-10-04T04:02:17"}]}],
            "[1].minutes[0].value",
        ),
    ],
)
def test_a_malformed_spo2_response_names_the_culprit(body: Any, field: str) -> None:
    with pytest.raises(PayloadError) as caught:
        map_spo2_intraday(body, owner_id="A1", utc_offset=BRT)
    assert caught.value.field == field


def test_the_spo2_summary_is_one_nightly_average_at_local_midnight() -> None:
    (sample,) = map_spo2_summary(SPO2_SUMMARY, owner_id="GGNJL9", utc_offset=BRT)
    assert (sample.value, sample.measured_at) == (97.5, datetime(2021, 10, 4, 3, tzinfo=UTC))
    assert sample.source_id == "GGNJL9:2021-10-04:spo2:daily_avg"
    with pytest.raises(PayloadError) as caught:
        map_spo2_summary(
            {"dateTime": "2021-10-04", "value": {"min": 94}}, owner_id="A", utc_offset=BRT
        )
    assert caught.value.field == "value.avg"


# Constructed from the §2.5 field list (get-blood-glucose-by-interval): the reference gives no
# example values, so `dateTime` is assumed ISO local time.
GLUCOSE_RESPONSE = [
    {
        "date": "2024-05-01",
        "minValue": 92,
        "maxValue": 140,
        "numberOfValues": 2,
        "sumOfValues": 232,
        "average": 116,
        "values": [
            {"dateTime": "2024-05-01T07:30:00", "value": 92, "measurementType": "SMBG"},
            {"dateTime": "2024-05-01T07:30:00", "value": 95, "measurementType": "CGM"},
        ],
    }
]


def test_glucose_values_keep_one_sample_per_measurement_type() -> None:
    samples = map_glucose(GLUCOSE_RESPONSE, owner_id="GGNJL9", utc_offset=BRT, unit="mmol/L")
    assert [(s.value, s.unit, s.measured_at) for s in samples] == [
        (92.0, "mmol/L", datetime(2024, 5, 1, 10, 30, tzinfo=UTC)),
        (95.0, "mmol/L", datetime(2024, 5, 1, 10, 30, tzinfo=UTC)),
    ]
    assert len({s.source_id for s in samples}) == 2


def test_a_glucose_response_without_values_names_the_culprit() -> None:
    with pytest.raises(PayloadError) as caught:
        map_glucose([{"date": "2024-05-01"}], owner_id="A", utc_offset=BRT, unit="mg/dL")
    assert caught.value.field == "[0].values"


def test_map_response_dispatches_on_the_pull_kind() -> None:
    pulls = {p.kind: p for c in ("activities", "sleep") for p in pulls_for(notification(c))}
    heart = map_response(pulls[FitbitPullKind.HEART_RATE_INTRADAY], HEART_1MIN, utc_offset=BRT)
    spo2 = map_response(pulls[FitbitPullKind.SPO2_INTRADAY], SPO2_INTRADAY, utc_offset=BRT)
    assert {s.metric for s in heart} == {Metric.HEART_RATE}
    assert {s.metric for s in spo2} == {Metric.SPO2}
    assert all(s.vendor_user == "GGNJL9" and s.measured_at.tzinfo is UTC for s in heart + spo2)
