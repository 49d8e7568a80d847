"""Google Health API: handshake, ECDSA P-256 signature, change notifications, data points.

The notification example is the reference's (§3, after open-wearables' webhooks.py schema). The
data-point payloads are constructed from Google's generated v4 client docs, which the reference
does not cover: the module marks that shape UNCONFIRMED.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from services.ingest.vendors.common import PayloadError
from services.ingest.vendors.google_health import (
    TimeInterval,
    is_verification,
    map_data_points,
    parse_notifications,
    pulls_for,
    verify_signature,
)
from shared.vitals import Metric

# §3 notification example (a JSON array; dataType is kebab-case).
NOTIFICATION = b"""[{"data":{"healthUserId":"1234567890","operation":"UPSERT","dataType":"heart-rate",
  "intervals":[{"physicalTimeInterval":{"startTime":"2026-05-01T10:00:00Z","endTime":"2026-05-01T10:15:00Z"}}],
  "clientProvidedSubscriptionName":"projects/example-project/subscribers/example-subscriber/subscriptions/user-42",
  "version":"1"}}]"""

KEY = ec.generate_private_key(ec.SECP256R1())
PEM = KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


def _der(body: bytes, key: ec.EllipticCurvePrivateKey = KEY) -> bytes:
    return key.sign(body, ec.ECDSA(hashes.SHA256()))


def _raw(body: bytes) -> bytes:
    r, s = decode_dss_signature(_der(body))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _b64(signature: bytes) -> str:
    return base64.b64encode(signature).decode()


@pytest.mark.parametrize(
    "header",
    [
        _b64(_der(NOTIFICATION)),  # DER
        _b64(_raw(NOTIFICATION)),  # raw r||s
        _b64(b"\x01\x12\x34\x56\x78" + _der(NOTIFICATION)),  # Tink key-id prefix + DER
        base64.urlsafe_b64encode(_der(NOTIFICATION)).decode().rstrip("="),  # url-safe, unpadded
    ],
)
def test_a_signature_by_the_configured_key_verifies(header: str) -> None:
    assert verify_signature(NOTIFICATION, header, PEM)
    assert verify_signature(NOTIFICATION, header, PEM.decode())


@pytest.mark.parametrize(
    ("body", "header"),
    [
        (NOTIFICATION.replace(b"UPSERT", b"DELETE"), _b64(_der(NOTIFICATION))),  # tampered body
        (NOTIFICATION, _b64(_der(NOTIFICATION, ec.generate_private_key(ec.SECP256R1())))),
        (NOTIFICATION, None),
        (NOTIFICATION, ""),
        (NOTIFICATION, "not base64 at all!"),
        (NOTIFICATION, _b64(b"\x00" * 64)),
        # The same JSON re-serialised: the signature covers the exact raw bytes.
        (json.dumps(json.loads(NOTIFICATION)).encode(), _b64(_der(NOTIFICATION))),
    ],
)
def test_anything_else_is_refused(body: bytes, header: str | None) -> None:
    assert not verify_signature(body, header, PEM)


def _public_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        (_public_pem(ec.generate_private_key(ec.SECP384R1())), "P-256"),
        (_public_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)), "P-256"),
        (b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n", None),
    ],
)
def test_a_key_that_is_not_p256_is_a_deployment_error_not_a_bad_signature(
    pem: bytes, message: str | None
) -> None:
    with pytest.raises(ValueError, match=message):
        verify_signature(NOTIFICATION, _b64(_der(NOTIFICATION)), pem)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"type": "verification"}, True),
        ({"type": "other"}, False),
        (json.loads(NOTIFICATION), False),
        ("verification", False),
    ],
)
def test_the_verification_handshake_is_recognised(body: object, expected: bool) -> None:
    assert is_verification(body) is expected


def test_the_documented_notification_becomes_one_change_and_one_pull() -> None:
    (change,) = parse_notifications(NOTIFICATION)
    interval = TimeInterval(
        datetime(2026, 5, 1, 10, tzinfo=UTC), datetime(2026, 5, 1, 10, 15, tzinfo=UTC)
    )
    assert (change.health_user_id, change.operation, change.data_type) == (
        "1234567890",
        "UPSERT",
        "heart-rate",
    )
    assert change.intervals == (interval,)
    assert change.subscription_name is not None and change.subscription_name.endswith("user-42")
    (pull,) = pulls_for(change)
    assert (pull.health_user_id, pull.data_type, pull.start, pull.end) == (
        "1234567890",
        "heart-rate",
        interval.start,
        interval.end,
    )


def _notice(**data: Any) -> bytes:
    base = json.loads(NOTIFICATION)[0]["data"]
    return json.dumps([{"data": {**base, **data}}]).encode()


@pytest.mark.parametrize(
    ("raw", "pulls"),
    [
        (_notice(operation="DELETE"), 0),  # nothing to fetch for a deletion
        (_notice(dataType="steps"), 0),  # a type we do not carry
        (_notice(dataType="oxygen-saturation"), 1),
        (_notice(dataType="blood-glucose"), 1),
        # A civil-only interval (local, zoneless) gives no UTC window to pull (as RADAR-base skips).
        (_notice(intervals=[{"civilTimeInterval": {"start": {"date": {"year": 2026}}}}]), 0),
    ],
)
def test_only_upserts_of_carried_types_with_physical_intervals_are_pulled(
    raw: bytes, pulls: int
) -> None:
    (change,) = parse_notifications(raw)
    assert len(pulls_for(change)) == pulls


def test_a_single_unwrapped_notification_object_is_tolerated() -> None:
    data = json.loads(NOTIFICATION)[0]["data"]
    (change,) = parse_notifications(json.dumps(data).encode())
    assert change.health_user_id == "1234567890"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"{not json", "$"),
        (b"[1]", "[0]"),
        (_notice(healthUserId=None), "[0].data.healthUserId"),
        (_notice(healthUserId="../admin"), "[0].data.healthUserId"),
        (_notice(dataType="heart rate/x"), "[0].data.dataType"),
        (_notice(operation=7), "[0].data.operation"),
        (_notice(intervals={}), "[0].data.intervals"),
        (
            _notice(intervals=[{"physicalTimeInterval": {"startTime": "2026-05-01T10:00:00"}}]),
            "[0].data.intervals[0].physicalTimeInterval.startTime",
        ),
        (
            _notice(
                intervals=[
                    {
                        "physicalTimeInterval": {
                            "startTime": "2026-05-01T10:15:00Z",
                            "endTime": "2026-05-01T10:00:00Z",
                        }
                    }
                ]
            ),
            "[0].data.intervals[0].physicalTimeInterval.endTime",
        ),
    ],
)
def test_a_malformed_notification_names_the_culprit(raw: bytes, field: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_notifications(raw)
    assert caught.value.field == field


def _time(physical: str) -> dict[str, str]:
    return {"physicalTime": physical, "utcOffset": "-10800s"}


DATA_POINTS: dict[str, Any] = {
    "dataPoints": [
        {
            "name": "users/1234567890/dataTypes/heart-rate/dataPoints/a1",
            "dataSource": {"platform": "FITBIT"},
            "heartRate": {"sampleTime": _time("2026-05-01T10:00:05Z"), "beatsPerMinute": "72"},
        },
        {
            "name": "users/1234567890/dataTypes/oxygen-saturation/dataPoints/b1",
            "oxygenSaturation": {
                "sampleTime": _time("2026-05-01T07:02:00-03:00"),
                "percentage": 96.5,
            },
        },
        {
            "name": "users/1234567890/dataTypes/blood-glucose/dataPoints/c1",
            "bloodGlucose": {
                "sampleTime": _time("2026-05-01T10:30:00.123456789Z"),
                "bloodGlucoseMilligramsPerDeciliter": 104.0,
            },
        },
        {"name": "users/1234567890/dataTypes/steps/dataPoints/d1", "steps": {"count": "120"}},
    ],
    "nextPageToken": "",
}


def test_data_points_of_carried_types_become_samples() -> None:
    samples = map_data_points(DATA_POINTS, health_user_id="1234567890")
    assert [(s.metric, s.value, s.unit, s.measured_at) for s in samples] == [
        (Metric.HEART_RATE, 72.0, "bpm", datetime(2026, 5, 1, 10, 0, 5, tzinfo=UTC)),
        (Metric.SPO2, 96.5, "%", datetime(2026, 5, 1, 10, 2, tzinfo=UTC)),
        (Metric.BLOOD_GLUCOSE, 104.0, "mg/dL", datetime(2026, 5, 1, 10, 30, 0, 123456, tzinfo=UTC)),
    ]
    assert samples[0].source_id == "users/1234567890/dataTypes/heart-rate/dataPoints/a1"
    assert all(s.vendor_user == "1234567890" for s in samples)


def test_an_empty_page_has_no_data_points_key_and_maps_to_nothing() -> None:
    assert map_data_points({"nextPageToken": ""}, health_user_id="u") == []


def _point(heart_rate: dict[str, Any]) -> dict[str, Any]:
    return {"dataPoints": [{"name": "n", "heartRate": heart_rate}]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "$"),
        ({"dataPoints": {}}, "dataPoints"),
        (_point({"beatsPerMinute": "72"}), "dataPoints[0].heartRate.sampleTime"),
        (
            _point({"beatsPerMinute": "seventy", "sampleTime": _time("2026-05-01T10:00:05Z")}),
            "dataPoints[0].heartRate.beatsPerMinute",
        ),
        (
            _point({"beatsPerMinute": 72, "sampleTime": _time("2026-05-01T10:00:05")}),
            "dataPoints[0].heartRate.sampleTime.physicalTime",
        ),
    ],
)
def test_a_malformed_data_point_names_the_culprit(body: Any, field: str) -> None:
    with pytest.raises(PayloadError) as caught:
        map_data_points(body, health_user_id="u")
    assert caught.value.field == field
