"""Google Health API (Fitbit's successor): webhook handshake, signature, change notices, data points.

Source of truth: shared/reference/vendor-formats.md §3. What is confirmed and what is not:

- CONFIRMED (§3): the verification handshake is a POST with body `{"type":"verification"}`; the
  payloads are signed with ECDSA on NIST P-256.
- UNCONFIRMED (§3, §9): the signature header name (`X-HEALTHAPI-SIGNATURE` per the reference,
  `GOOGLE-HEALTH-API-SIGNATURE` per Open Wearables and RADAR-base), and the signature encoding.
  We assume standard Base64 of an ECDSA-SHA256 signature over the exact raw body bytes, and accept
  either DER or raw r||s (64 bytes), with or without a 5-byte Tink key-id prefix (RADAR-base
  verifies it with a Tink keyset from gstatic.com; Tink may prefix signatures with a key id).
- SECONDARY (§3): the notification body: a JSON array of `{"data": {healthUserId, operation,
  dataType (kebab-case), intervals[].physicalTimeInterval{startTime,endTime}, ...}}`. We also take a
  single object and elements without the `data` wrapper, and skip intervals with no physical
  (UTC) interval, as RADAR-base does for civil-only daily aggregates.
- NOT IN THE REFERENCE: the data-point response. The shape used here comes from Google's generated
  v4 client documentation (ListDataPointsResponse `{dataPoints[], nextPageToken}`; DataPoint
  `{name, dataSource, <union member>}`; HeartRate `{sampleTime, beatsPerMinute}` (int64, so a JSON
  string); OxygenSaturation `{sampleTime, percentage}`; BloodGlucose `{sampleTime,
  bloodGlucoseMilligramsPerDeciliter}`; ObservationSampleTime `{physicalTime, utcOffset}`).
  Check it against live traffic before relying on it.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from services.ingest.vendors.common import PayloadError, VendorSample
from services.ingest.vendors.wire import (
    ROOT,
    as_list,
    as_number,
    as_object,
    at,
    decode,
    item,
    need,
    need_str,
    opt_str,
    parse_instant,
)
from shared.vitals import Metric

SIGNATURE_HEADERS = ("X-HEALTHAPI-SIGNATURE", "GOOGLE-HEALTH-API-SIGNATURE")  # UNCONFIRMED
_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_TINK_PREFIX_LEN = 5  # one version byte (0x00 legacy / 0x01 tink) + a 4-byte key id

# dataType (kebab-case, as in notifications) → (DataPoint union member, value field, metric, unit).
_MAPPED: dict[str, tuple[str, str, Metric, str]] = {
    "heart-rate": ("heartRate", "beatsPerMinute", Metric.HEART_RATE, "bpm"),
    "oxygen-saturation": ("oxygenSaturation", "percentage", Metric.SPO2, "%"),
    "blood-glucose": (
        "bloodGlucose",
        "bloodGlucoseMilligramsPerDeciliter",
        Metric.BLOOD_GLUCOSE,
        "mg/dL",
    ),
}


@dataclass(frozen=True)
class TimeInterval:
    """A physical (UTC) time interval named by a change notification."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class GoogleHealthChange:
    """One data-change notification: this user's data of this type changed in these intervals."""

    health_user_id: str
    operation: str  # "UPSERT" or "DELETE"
    data_type: str
    intervals: tuple[TimeInterval, ...]
    subscription_name: str | None = None


@dataclass(frozen=True)
class GoogleHealthPull:
    """What to list afterwards: `data_type` points of `health_user_id` within [start, end]."""

    health_user_id: str
    data_type: str
    start: datetime
    end: datetime


def is_verification(body: object) -> bool:
    """Say whether a decoded webhook body is the subscriber verification handshake."""
    return isinstance(body, dict) and body.get("type") == "verification"


def verify_signature(
    raw_body: bytes, signature_header: str | None, public_key_pem: str | bytes
) -> bool:
    """Verify the ECDSA P-256 / SHA-256 webhook signature over the exact raw body bytes.

    Raises ValueError when `public_key_pem` is not a P-256 public key: that is a deployment
    error, not a bad request, and must not pass silently as "signature invalid".
    """
    key = public_key(
        public_key_pem if isinstance(public_key_pem, bytes) else public_key_pem.encode()
    )
    signature = _base64(signature_header or "")
    if not signature:
        return False
    for candidate in _der_candidates(signature):
        try:
            key.verify(candidate, raw_body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            continue
        return True
    return False


@lru_cache(maxsize=4)
def public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """Load a PEM public key; ValueError unless it is an EC P-256 public key."""
    try:
        key = load_pem_public_key(pem)
    except ValueError as exc:
        raise ValueError("the Google Health API public key is not a PEM public key") from exc
    except UnsupportedAlgorithm as exc:
        raise ValueError("the Google Health API public key uses an unsupported algorithm") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the Google Health API public key must be an EC P-256 public key")
    return key


def _base64(text: str) -> bytes:
    cleaned = text.strip()
    padded = cleaned + "=" * (-len(cleaned) % 4)
    for altchars in (None, b"-_"):
        try:
            return base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
    return b""


def _der_candidates(signature: bytes) -> list[bytes]:
    candidates = [signature]
    if len(signature) == 64:  # raw r||s (IEEE P1363), as some signers emit
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        candidates.append(encode_dss_signature(r, s))
    if len(signature) > _TINK_PREFIX_LEN and signature[0] in (0, 1):
        candidates += _der_candidates(signature[_TINK_PREFIX_LEN:])
    return candidates


def parse_notifications(raw: bytes) -> list[GoogleHealthChange]:
    """Parse a data-change notification body (a JSON array of `{"data": {...}}`) into changes."""
    body = decode(raw)
    if isinstance(body, dict):
        return [_change(body, ROOT)]
    return [_change(entry, item(ROOT, i)) for i, entry in enumerate(as_list(body, ROOT))]


def _change(value: object, path: str) -> GoogleHealthChange:
    obj = as_object(value, path)
    if "data" in obj:
        path = at(path, "data")
        obj = as_object(obj["data"], path)
    user = _identifier(need_str(obj, "healthUserId", path), at(path, "healthUserId"))
    data_type = _identifier(need_str(obj, "dataType", path), at(path, "dataType"))
    intervals_path = at(path, "intervals")
    raw_intervals = as_list(obj.get("intervals", []), intervals_path)
    intervals = [_interval(v, item(intervals_path, i)) for i, v in enumerate(raw_intervals)]
    return GoogleHealthChange(
        health_user_id=user,
        operation=need_str(obj, "operation", path),
        data_type=data_type,
        intervals=tuple(i for i in intervals if i is not None),
        subscription_name=opt_str(obj, "clientProvidedSubscriptionName", path),
    )


def _identifier(value: str, path: str) -> str:
    # Both ids end up in API paths (users/{id}/dataTypes/{type}/...): refuse anything path-like.
    if not _ID.match(value):
        raise PayloadError(path, "must be letters, digits, '.', '_' or '-'")
    return value


def _interval(value: object, path: str) -> TimeInterval | None:
    obj = as_object(value, path)
    if obj.get("physicalTimeInterval") is None:
        return None  # civil-only (local, zoneless) interval: nothing to anchor a UTC pull to
    physical_path = at(path, "physicalTimeInterval")
    physical = as_object(obj["physicalTimeInterval"], physical_path)
    start = parse_instant(
        need(physical, "startTime", physical_path), at(physical_path, "startTime")
    )
    end = parse_instant(need(physical, "endTime", physical_path), at(physical_path, "endTime"))
    if end < start:
        raise PayloadError(at(physical_path, "endTime"), "is before startTime")
    return TimeInterval(start, end)


def pulls_for(change: GoogleHealthChange) -> list[GoogleHealthPull]:
    """List the data to fetch for a change: one pull per interval of an UPSERT of a mapped type."""
    if change.operation != "UPSERT" or change.data_type not in _MAPPED:
        return []
    return [
        GoogleHealthPull(change.health_user_id, change.data_type, interval.start, interval.end)
        for interval in change.intervals
    ]


def map_data_points(body: Any, *, health_user_id: str) -> list[VendorSample]:
    """Map a dataPoints list response to samples; points of types we do not carry are skipped."""
    doc = as_object(body, ROOT)
    # proto3 JSON omits empty repeated fields, so a page without points has no `dataPoints` key.
    points = as_list(doc.get("dataPoints", []), "dataPoints")
    samples: list[VendorSample] = []
    for i, point in enumerate(points):
        sample = _sample(
            as_object(point, item("dataPoints", i)), item("dataPoints", i), health_user_id
        )
        if sample is not None:
            samples.append(sample)
    return samples


def _sample(point: dict[str, Any], path: str, user: str) -> VendorSample | None:
    for member, field, metric, unit in _MAPPED.values():
        if point.get(member) is None:
            continue
        member_path = at(path, member)
        data = as_object(point[member], member_path)
        value = _proto_number(need(data, field, member_path), at(member_path, field))
        time_path = at(member_path, "sampleTime")
        sample_time = as_object(need(data, "sampleTime", member_path), time_path)
        measured_at = parse_instant(
            need(sample_time, "physicalTime", time_path), at(time_path, "physicalTime")
        )
        name = opt_str(point, "name", path)
        source_id = name or f"{user}:{member}:{measured_at.isoformat()}"
        return VendorSample(user, metric, value, unit, measured_at, source_id)
    return None


def _proto_number(value: object, path: str) -> float:
    # proto3 JSON encodes int64 (e.g. beatsPerMinute) as a decimal string.
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError as exc:
            raise PayloadError(path, f"is not a number: {value!r}") from exc
    return as_number(value, path)
