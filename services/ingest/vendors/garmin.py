"""Garmin Health API push and ping delivery → samples, lifecycle notices and pull requests.

Source of truth: shared/reference/vendor-formats.md §4. Every Garmin fact there is SECONDARY
(field names from the RADAR-base and Open Wearables receivers; Garmin's spec is partner-gated), so
this module is tolerant: unknown keys are ignored, the documented aliases are accepted
(`timeOffsetEpochToBreaths` / `timeOffsetRespirationValues`; `measurementTimeInSeconds` /
`startTimeInSeconds` for blood pressure), and `userAccessToken` is never required.

Times: `startTimeInSeconds` is a UTC epoch; an offset-map key counts seconds after it, so a sample
is at start + int(key) (RADAR `HeartRateSampleGarminAvroConverter`). `*OffsetInSeconds` (or
`offsetStartTimeInSeconds` in healthSnapshot) is the local-time offset and does not change the
instant. Idempotency: `summaryId` (Garmin re-sends updated summaries), so a sample's source_id is
f"{summaryId}:{offset}:{metric}", with offset 0 for values that are not in an offset map.

A value <= 0 in a heart-rate/SpO2/respiration field is taken as "no reading" and skipped, as
Shimmer does for Fitbit heart rate and iHealth SpO2 (§6.2); it is never a physiological value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from services.ingest.vendors.common import PayloadError, VendorSample
from services.ingest.vendors.wire import (
    ROOT,
    as_int,
    as_list,
    as_number,
    as_object,
    as_str,
    at,
    entry,
    from_epoch,
    item,
    need,
    need_str,
)
from shared.vitals import Metric

PULL_ORIGIN = "https://apis.garmin.com"  # ping callbacks carry the user's token: never elsewhere

# Push types Garmin sends that carry nothing we alert on: mapped to an empty batch, not an error.
_UNCARRIED = frozenset(
    {
        "sleeps",
        "bodyComps",
        "hrv",
        "stressDetails",
        "skinTemp",
        "moveIQActivities",
        "mct",
        "userMetrics",
        "activities",
        "activityDetails",
        "activityFiles",
        "manualActivities",
    }
)
_TYPE_ALIASES = {"respiration": "allDayRespiration"}
_SNAPSHOT_METRICS = {
    "heart_rate": (Metric.HEART_RATE, "bpm"),
    "spo2": (Metric.SPO2, "%"),
    "respiration": (Metric.RESPIRATORY_RATE, "breaths/min"),
}


@dataclass(frozen=True)
class GarminDeregistration:
    """The user disconnected our app from Garmin Connect."""

    user_id: str


@dataclass(frozen=True)
class GarminPermissionsChange:
    """The user changed which data our app may read; `permissions` is the new full list."""

    user_id: str
    permissions: tuple[str, ...]


GarminNotice = GarminDeregistration | GarminPermissionsChange


@dataclass(frozen=True)
class GarminPull:
    """Ping mode: GET `callback_url` with the user's OAuth token to fetch the summaries."""

    user_id: str
    summary_type: str
    callback_url: str


@dataclass(frozen=True)
class GarminBatch:
    """Everything one push body asks of us."""

    samples: list[VendorSample] = field(default_factory=list)
    notices: list[GarminNotice] = field(default_factory=list)
    pulls: list[GarminPull] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)  # records per type we do not carry


def map_push(
    summary_type: str, body: dict[str, Any], *, pull_origin: str = PULL_ORIGIN
) -> GarminBatch:
    """Map a per-type webhook body: it must carry the URL's summary type, and every other type
    in it is mapped too (overlapping backfills mix types); unknown types are counted in
    `ignored`, never silently dropped."""
    canonical = _TYPE_ALIASES.get(summary_type, summary_type)
    if canonical not in _KNOWN:
        raise PayloadError(summary_type, "is not a Garmin summary type we know")
    doc = as_object(body, ROOT)
    if canonical not in doc:
        need(doc, summary_type, ROOT)  # PayloadError naming the type the URL promised
    return map_push_body(doc, pull_origin=pull_origin)


def map_push_body(body: Any, *, pull_origin: str = PULL_ORIGIN) -> GarminBatch:
    """Map every summary type in a push body (one URL for all types; backfills may mix types)."""
    batch = GarminBatch()
    for key, records in as_object(body, ROOT).items():
        canonical = _TYPE_ALIASES.get(key, key)
        if canonical in _KNOWN:
            _map_type(canonical, records, key, batch, pull_origin)
        else:  # a type Garmin added after this was written: count it, do not fail the push
            batch.ignored[key] = batch.ignored.get(key, 0) + len(as_list(records, key))
    return batch


def _map_type(
    summary_type: str, records: object, path: str, batch: GarminBatch, pull_origin: str
) -> None:
    rows = as_list(records, path)
    if summary_type in _UNCARRIED:
        batch.ignored[summary_type] = batch.ignored.get(summary_type, 0) + len(rows)
        return
    for i, row in enumerate(rows):
        record_path = item(path, i)
        record = as_object(row, record_path)
        if summary_type == "deregistrations":
            batch.notices.append(GarminDeregistration(need_str(record, "userId", record_path)))
        elif summary_type == "userPermissionsChange":
            batch.notices.append(_permissions(record, record_path))
        elif "callbackURL" in record:
            batch.pulls.append(_pull(summary_type, record, record_path, pull_origin))
        else:
            _MAPPERS[summary_type](record, record_path, batch.samples)


def _permissions(record: dict[str, Any], path: str) -> GarminPermissionsChange:
    list_path = at(path, "permissions")
    permissions = as_list(need(record, "permissions", path), list_path)
    names = tuple(as_str(p, item(list_path, i)) for i, p in enumerate(permissions))
    return GarminPermissionsChange(need_str(record, "userId", path), names)


def _pull(summary_type: str, record: dict[str, Any], path: str, origin: str) -> GarminPull:
    url_path = at(path, "callbackURL")
    url = need_str(record, "callbackURL", path)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise PayloadError(url_path, "is not a URL") from exc
    # Following a callback sends the user's OAuth token: only ever to Garmin's API host, over TLS.
    want = urlsplit(origin)
    default_port = {"https": 443, "http": 80}.get(want.scheme)
    trusted = (
        parts.scheme == want.scheme
        and parts.hostname == want.hostname
        and (port or default_port) == (want.port or default_port)
    )
    if not trusted or parts.username is not None:
        raise PayloadError(url_path, f"must be a {origin}/ URL")
    return GarminPull(need_str(record, "userId", path), summary_type, url)


def _dailies(record: dict[str, Any], path: str, out: list[VendorSample]) -> None:
    _series(record, path, "timeOffsetHeartRateSamples", Metric.HEART_RATE, "bpm", out)


def _pulseox(record: dict[str, Any], path: str, out: list[VendorSample]) -> None:
    _series(record, path, "timeOffsetSpo2Values", Metric.SPO2, "%", out)


def _respiration(record: dict[str, Any], path: str, out: list[VendorSample]) -> None:
    key = "timeOffsetEpochToBreaths"
    if record.get(key) is None and record.get("timeOffsetRespirationValues") is not None:
        key = "timeOffsetRespirationValues"  # the Open Wearables pydantic schema's spelling
    _series(record, path, key, Metric.RESPIRATORY_RATE, "breaths/min", out)


def _epochs(record: dict[str, Any], path: str, out: list[VendorSample]) -> None:
    # A 15-minute bucket's mean heart rate, stamped at the bucket's start.
    ids = (*_ids(record, path), _seconds(record, path, "startTimeInSeconds"))
    _scalar(record, path, "meanHeartRateInBeatsPerMinute", ids, out)


def _blood_pressure(record: dict[str, Any], path: str, out: list[VendorSample]) -> None:
    key = "measurementTimeInSeconds"
    if record.get(key) is None:
        key = "startTimeInSeconds"  # what RADAR's converter and Open Wearables' fallback read
    ids = (*_ids(record, path), _seconds(record, path, key))
    for name in ("systolic", "diastolic", "pulse"):
        _scalar(record, path, name, ids, out)


def _health_snapshot(record: dict[str, Any], path: str, out: list[VendorSample]) -> None:
    ids = (*_ids(record, path), _seconds(record, path, "startTimeInSeconds"))
    summaries_path = at(path, "summaries")
    for i, summary in enumerate(as_list(record.get("summaries", []), summaries_path)):
        summary_path = item(summaries_path, i)
        obj = as_object(summary, summary_path)
        kind = _SNAPSHOT_METRICS.get(need_str(obj, "summaryType", summary_path))
        if kind is None or obj.get("epochSummaries") is None:  # stress is not a vital we carry
            continue
        # epochSummaries keys are seconds after the record's start (RADAR's snapshot converters).
        map_path = at(summary_path, "epochSummaries")
        _offsets(obj["epochSummaries"], map_path, ids, kind, out)


_SCALARS = {
    "meanHeartRateInBeatsPerMinute": (Metric.HEART_RATE, "bpm"),
    "systolic": (Metric.SYSTOLIC_BP, "mmHg"),
    "diastolic": (Metric.DIASTOLIC_BP, "mmHg"),
    "pulse": (Metric.HEART_RATE, "bpm"),
}


def _scalar(
    record: dict[str, Any], path: str, key: str, ids: tuple[str, str, int], out: list[VendorSample]
) -> None:
    if record.get(key) is None:
        return
    value = as_number(record[key], at(path, key))
    if value <= 0:
        return
    user, summary_id, epoch = ids
    metric, unit = _SCALARS[key]
    measured_at = from_epoch(epoch, at(path, key))
    source_id = f"{summary_id}:0:{metric.value}"
    out.append(VendorSample(user, metric, value, unit, measured_at, source_id))


def _series(
    record: dict[str, Any], path: str, key: str, metric: Metric, unit: str, out: list[VendorSample]
) -> None:
    if record.get(key) is None:
        return
    ids = (*_ids(record, path), _seconds(record, path, "startTimeInSeconds"))
    _offsets(record[key], at(path, key), ids, (metric, unit), out)


def _offsets(
    samples: object,
    map_path: str,
    ids: tuple[str, str, int],
    kind: tuple[Metric, str],
    out: list[VendorSample],
) -> None:
    if not isinstance(samples, dict):
        raise PayloadError(map_path, "must be an object of offset seconds → value")
    user, summary_id, start = ids
    metric, unit = kind
    # Hot path (a day of 15-s heart rate is ~5,760 entries): plain checks, no per-sample models.
    for key, value in samples.items():
        try:
            offset = int(key)
        except ValueError:
            raise PayloadError(entry(map_path, key), "key must be whole seconds") from None
        if type(value) is not int and type(value) is not float:
            raise PayloadError(
                entry(map_path, key), f"must be a number, got {type(value).__name__}"
            )
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an integer too large for a float
            raise PayloadError(entry(map_path, key), "is out of range") from None
        if not finite:
            raise PayloadError(entry(map_path, key), "must be a finite number")
        if value <= 0:
            continue
        measured_at = from_epoch(start + offset, entry(map_path, key))
        source_id = f"{summary_id}:{offset}:{metric.value}"
        out.append(VendorSample(user, metric, float(value), unit, measured_at, source_id))


def _ids(record: dict[str, Any], path: str) -> tuple[str, str]:
    return need_str(record, "userId", path), need_str(record, "summaryId", path)


def _seconds(record: dict[str, Any], path: str, key: str) -> int:
    return as_int(need(record, key, path), at(path, key))


_MAPPERS: dict[str, Callable[[dict[str, Any], str, list[VendorSample]], None]] = {
    "dailies": _dailies,
    "epochs": _epochs,
    "pulseox": _pulseox,
    "allDayRespiration": _respiration,
    "bloodPressures": _blood_pressure,
    "healthSnapshot": _health_snapshot,
}
_KNOWN = frozenset({*_MAPPERS, *_UNCARRIED, "deregistrations", "userPermissionsChange"})
