"""Fitbit Web API (legacy): subscriber signature, notifications, follow-up pulls and data mappers.

Source of truth: shared/reference/vendor-formats.md §2 (Fitbit) and §8 (adapter guidance).

- Notifications carry no data (§2.1, confirmed): each names (ownerId, collectionType, date) and we
  pull the data afterwards. Fitbit has no heart-rate, SpO2 or glucose collection, so which
  collection triggers which pull is an INFERENCE (§2.1, unconfirmed): `activities` → heart-rate
  intraday, `sleep` → SpO2 (measured only during the main sleep, §2.5), and `body` → blood glucose
  (our own guess: glucose is a manually logged health metric like weight; nothing in the reference
  names its collection).
- Intraday heart-rate `time` and SpO2 `minute` are the user's local wall-clock time without an
  offset (§2.5), so the mappers take the user's `utc_offset` (from /1/user/-/profile.json). One
  offset per call: a DST switch inside the pulled day shifts the samples after it by the DST step.
- Glucose values carry no unit: the unit follows the request's Accept-Language (§2.5), so the pull
  fixes `Accept-Language: en_US` (US units, mg/dL) and the mapper is told the unit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from services.ingest.vendors.common import PayloadError, VendorSample
from services.ingest.vendors.wire import (
    ROOT,
    as_list,
    as_object,
    as_str,
    at,
    aware_utc,
    decode,
    item,
    need,
    need_number,
    need_str,
    opt_str,
)
from shared.vitals import Metric

# Encoded Fitbit user ids are short alphanumerics (e.g. "228S74"); the id is interpolated into API
# paths, so anything else (a "/", "..", "-") is refused rather than sent to Fitbit.
_OWNER_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CLOCK = re.compile(r"^\d{2}:\d{2}:\d{2}$")

GLUCOSE_ACCEPT_LANGUAGE = "en_US"
_GLUCOSE_UNIT_BY_LANGUAGE = {"en_US": "mg/dL"}  # every other locale gets METRIC units (mmol/L)


@dataclass(frozen=True)
class FitbitNotification:
    """One entry of a Fitbit subscription notification (a JSON array of these)."""

    collection_type: str
    date: date
    owner_id: str
    owner_type: str
    subscription_id: str

    @property
    def revokes_access(self) -> bool:
        """Say whether the user revoked our access (stop pulling, mark the connection revoked)."""
        return self.collection_type == "userRevokedAccess"


class FitbitPullKind(StrEnum):
    """Which Fitbit Web API resource a pull fetches, and so which mapper reads the response."""

    HEART_RATE_INTRADAY = "heart_rate_intraday"
    SPO2_INTRADAY = "spo2_intraday"
    SPO2_SUMMARY = "spo2_summary"
    GLUCOSE = "glucose"


@dataclass(frozen=True)
class FitbitPull:
    """A GET to run against https://api.fitbit.com after a notification; `path` is relative."""

    kind: FitbitPullKind
    owner_id: str
    date: date
    path: str
    accept_language: str | None = None


def verify_signature(raw_body: bytes, header: str | None, client_secret: str) -> bool:
    """Check X-Fitbit-Signature = Base64(HMAC-SHA1(raw body, client_secret + "&")) in constant time."""
    if not header:
        return False
    key = (client_secret + "&").encode("utf-8")
    expected = base64.b64encode(hmac.new(key, raw_body, hashlib.sha1).digest())
    # The header is compared as received: URL-decoding would turn "+" into " " and break the check.
    return hmac.compare_digest(expected, header.encode("utf-8", "replace"))


def parse_notifications(raw: bytes) -> list[FitbitNotification]:
    """Parse a notification POST body (a JSON array) into notifications."""
    entries = as_list(decode(raw), ROOT)
    return [_notification(entry, item(ROOT, i)) for i, entry in enumerate(entries)]


def _notification(value: object, path: str) -> FitbitNotification:
    obj = as_object(value, path)
    owner_id = need_str(obj, "ownerId", path)
    if not _OWNER_ID.match(owner_id):
        raise PayloadError(at(path, "ownerId"), "must be an alphanumeric Fitbit user id")
    return FitbitNotification(
        collection_type=need_str(obj, "collectionType", path),
        date=_day(need(obj, "date", path), at(path, "date")),
        owner_id=owner_id,
        owner_type=need_str(obj, "ownerType", path),
        subscription_id=need_str(obj, "subscriptionId", path),
    )


def pulls_for(notification: FitbitNotification, *, intraday: bool = True) -> list[FitbitPull]:
    """List the Web API resources to fetch for a notification (none for foods or revocations).

    `intraday=False` is for apps without Fitbit's intraday approval: SpO2 falls back to the
    nightly summary and heart rate is not pulled (the daily summary has no per-sample values).
    """
    user, day = notification.owner_id, notification.date.isoformat()

    def pull(kind: FitbitPullKind, path: str, language: str | None = None) -> FitbitPull:
        return FitbitPull(kind, user, notification.date, f"/1/user/{user}/{path}", language)

    collection = notification.collection_type
    if collection == "activities" and intraday:
        return [
            pull(FitbitPullKind.HEART_RATE_INTRADAY, f"activities/heart/date/{day}/1d/1sec.json")
        ]
    if collection == "sleep":
        if intraday:
            return [pull(FitbitPullKind.SPO2_INTRADAY, f"spo2/date/{day}/all.json")]
        return [pull(FitbitPullKind.SPO2_SUMMARY, f"spo2/date/{day}.json")]
    if collection == "body":
        path = f"health/metrics/glucose/values/{day}/{day}.json"
        return [pull(FitbitPullKind.GLUCOSE, path, GLUCOSE_ACCEPT_LANGUAGE)]
    return []


def map_response(pull: FitbitPull, body: Any, *, utc_offset: timedelta) -> list[VendorSample]:
    """Map the decoded JSON response of `pull` to samples, using the mapper for its kind."""
    owner = pull.owner_id
    if pull.kind is FitbitPullKind.HEART_RATE_INTRADAY:
        return map_heart_rate_intraday(body, owner_id=owner, utc_offset=utc_offset)
    if pull.kind is FitbitPullKind.SPO2_INTRADAY:
        return map_spo2_intraday(body, owner_id=owner, utc_offset=utc_offset)
    if pull.kind is FitbitPullKind.SPO2_SUMMARY:
        return map_spo2_summary(body, owner_id=owner, utc_offset=utc_offset)
    unit = _GLUCOSE_UNIT_BY_LANGUAGE.get(pull.accept_language or "", "mmol/L")
    return map_glucose(body, owner_id=owner, utc_offset=utc_offset, unit=unit)


def map_heart_rate_intraday(
    body: Any, *, owner_id: str, utc_offset: timedelta
) -> list[VendorSample]:
    """Map an intraday heart-rate response (1sec or 1min detail) to one sample per dataset entry."""
    doc = as_object(body, ROOT)
    series = "activities-heart-intraday"
    dataset_path = at(series, "dataset")
    dataset = as_list(
        need(as_object(need(doc, series, ROOT), series), "dataset", series), dataset_path
    )
    if not dataset:
        return []
    day = _heart_date(doc)
    samples: list[VendorSample] = []
    for i, point in enumerate(dataset):
        path = item(dataset_path, i)
        obj = as_object(point, path)
        value = need_number(obj, "value", path)
        if value <= 0:  # 0 means "no reading" (Shimmer's Fitbit mapper skips it too)
            continue
        clock = _clock(need(obj, "time", path), at(path, "time"))
        local = datetime.combine(day, clock)
        source_id = f"{owner_id}:{local.isoformat()}:{Metric.HEART_RATE.value}"
        measured_at = _utc(local, utc_offset, path)
        samples.append(
            VendorSample(owner_id, Metric.HEART_RATE, value, "bpm", measured_at, source_id)
        )
    return samples


def _heart_date(doc: dict[str, Any]) -> date:
    days = as_list(need(doc, "activities-heart", ROOT), "activities-heart")
    if not days:
        raise PayloadError("activities-heart", "is empty but the intraday dataset is not")
    first = as_object(days[0], "activities-heart[0]")
    return _day(need(first, "dateTime", "activities-heart[0]"), "activities-heart[0].dateTime")


def map_spo2_intraday(body: Any, *, owner_id: str, utc_offset: timedelta) -> list[VendorSample]:
    """Map an SpO2 intraday response (one day's object, or an array of them) to samples."""
    samples: list[VendorSample] = []
    for day_obj, path in _days(body):
        minutes_path = at(path, "minutes")
        for i, point in enumerate(as_list(need(day_obj, "minutes", path), minutes_path)):
            point_path = item(minutes_path, i)
            obj = as_object(point, point_path)
            value = need_number(obj, "value", point_path)
            minute = as_str(need(obj, "minute", point_path), at(point_path, "minute"))
            measured_at = _moment(minute, at(point_path, "minute"), utc_offset)
            source_id = f"{owner_id}:{minute}:{Metric.SPO2.value}"
            samples.append(VendorSample(owner_id, Metric.SPO2, value, "%", measured_at, source_id))
    return samples


def map_spo2_summary(body: Any, *, owner_id: str, utc_offset: timedelta) -> list[VendorSample]:
    """Map an SpO2 summary (one object or an array) to one nightly-average sample per date.

    The summary has a date but no time, and covers the main sleep ending on that date; the sample
    is stamped at local midnight starting `dateTime`, which falls inside most people's main sleep.
    """
    samples: list[VendorSample] = []
    for day_obj, path in _days(body):
        day = _day(need(day_obj, "dateTime", path), at(path, "dateTime"))
        value_path = at(path, "value")
        avg = need_number(as_object(need(day_obj, "value", path), value_path), "avg", value_path)
        local = datetime.combine(day, time())
        source_id = f"{owner_id}:{day.isoformat()}:{Metric.SPO2.value}:daily_avg"
        measured_at = _utc(local, utc_offset, path)
        samples.append(VendorSample(owner_id, Metric.SPO2, avg, "%", measured_at, source_id))
    return samples


def _days(body: Any) -> list[tuple[dict[str, Any], str]]:
    # A single-date request answers one object, a range request an array of them (§2.5). An empty
    # object is taken as "no data for that date" rather than as a malformed document.
    if isinstance(body, list):
        return [(as_object(entry, item(ROOT, i)), item(ROOT, i)) for i, entry in enumerate(body)]
    doc = as_object(body, ROOT)
    return [(doc, ROOT)] if doc else []


def map_glucose(
    body: Any, *, owner_id: str, utc_offset: timedelta, unit: str
) -> list[VendorSample]:
    """Map a blood-glucose-by-interval response (an array of per-day objects) to samples.

    UNCONFIRMED: the reference gives the field names but no example value for `dateTime`; an ISO
    date-time is assumed, local wall-clock like the other Fitbit times unless it carries an offset.
    """
    samples: list[VendorSample] = []
    for d, day_value in enumerate(as_list(body, ROOT)):
        day_path = item(ROOT, d)
        values_path = at(day_path, "values")
        day_obj = as_object(day_value, day_path)
        for i, point in enumerate(as_list(need(day_obj, "values", day_path), values_path)):
            path = item(values_path, i)
            obj = as_object(point, path)
            value = need_number(obj, "value", path)
            when = as_str(need(obj, "dateTime", path), at(path, "dateTime"))
            moment = _moment(when, at(path, "dateTime"), utc_offset)
            kind = opt_str(obj, "measurementType", path)
            source_id = f"{owner_id}:{when}:{Metric.BLOOD_GLUCOSE.value}"
            source_id += f":{kind}" if kind else ""
            samples.append(
                VendorSample(owner_id, Metric.BLOOD_GLUCOSE, value, unit, moment, source_id)
            )
    return samples


def _day(value: object, path: str) -> date:
    text = as_str(value, path)
    if not _DATE.match(text):
        raise PayloadError(path, f"must be a yyyy-MM-dd date, got {text!r}")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise PayloadError(path, f"is not a calendar date: {text!r}") from exc


def _clock(value: object, path: str) -> time:
    text = as_str(value, path)
    if not _CLOCK.match(text):
        raise PayloadError(path, f"must be an HH:mm:ss time, got {text!r}")
    try:
        return time.fromisoformat(text)
    except ValueError as exc:
        raise PayloadError(path, f"is not a time of day: {text!r}") from exc


def _moment(text: str, path: str, utc_offset: timedelta) -> datetime:
    # Fitbit times are local wall-clock without an offset (§2.5); one that has an offset is used as is.
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise PayloadError(path, f"is not an ISO-8601 date-time: {text!r}") from exc
    return _utc(moment, utc_offset, path) if moment.tzinfo is None else aware_utc(moment, path)


def _utc(local: datetime, utc_offset: timedelta, path: str) -> datetime:
    try:
        return (local - utc_offset).replace(tzinfo=UTC)
    except OverflowError as exc:  # a date at the edge of the calendar (year 1 or 9999)
        raise PayloadError(path, f"is out of range: {local.isoformat()}") from exc
