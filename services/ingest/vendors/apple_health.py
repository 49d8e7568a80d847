"""Apple HealthKit data → samples, from Health Auto Export (HAE) or our own HealthKit-style JSON.

Source of truth: shared/reference/vendor-formats.md §5 and §8.

- HAE REST JSON (§5.2, vendor material): `{"data": {"metrics": [{name, units, data: [...]}]}}`,
  point dates "yyyy-MM-dd HH:mm:ss Z". `heart_rate` points carry Min/Avg/Max: we take **Avg**, the
  central value of the aggregation interval (with HAE's default per-second heart-rate aggregation
  Min = Avg = Max, so nothing is lost); a point with only `qty` is read as well. `blood_pressure`
  points carry systolic/diastolic and become two samples. HAE's unit strings are inconsistent
  (§5.2, §9): `count/min` | `bpm` are both accepted, and an SpO2 value <= 1.0 is a fraction.
- HealthKit-style JSON (§5.3, §5.4; no canonical wire format exists): an array of
  `{type, value, unit, startDate, endDate, uuid, ...}` quantity samples and
  `HKCorrelationTypeIdentifierBloodPressure` correlations whose `objects` hold the systolic and
  diastolic samples. `HKUnit.percent()` is 0.0-1.0, so SpO2 fractions are scaled to 0-100;
  `mmol<180.15...>/L` glucose becomes `mmol/L`; `degF` becomes `[degF]` (units.py).

Types we do not carry (steps, sleep, ...) are skipped and counted per HAE name or HK identifier.
Apple data arrives late and duplicated (§5.2), so source ids are stable: the HK sample `uuid`, and
for HAE f"{vendor_user}:{name}:{utc instant}:{metric}" plus the point's `source` when it has one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.ingest.vendors.common import PayloadError, VendorSample
from services.ingest.vendors.units import catalogue_unit, spo2_percent
from services.ingest.vendors.wire import (
    ROOT,
    as_list,
    as_object,
    as_str,
    at,
    aware_utc,
    item,
    need,
    need_number,
    need_str,
    opt_str,
    parse_instant,
)
from shared.vitals import Metric

# HAE metric name → (point key, metric) pairs; heart_rate reads Avg (falling back to qty).
_HAE_METRICS: dict[str, tuple[tuple[str, Metric], ...]] = {
    "blood_pressure": (("systolic", Metric.SYSTOLIC_BP), ("diastolic", Metric.DIASTOLIC_BP)),
    "heart_rate": (("Avg", Metric.HEART_RATE),),
    "blood_oxygen_saturation": (("qty", Metric.SPO2),),
    "respiratory_rate": (("qty", Metric.RESPIRATORY_RATE),),
    "blood_glucose": (("qty", Metric.BLOOD_GLUCOSE),),
    "body_temperature": (("qty", Metric.BODY_TEMPERATURE),),
}
_HAE_DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"

_HK_QUANTITY = "HKQuantityTypeIdentifier"
_HK_TYPES = {
    f"{_HK_QUANTITY}HeartRate": Metric.HEART_RATE,
    f"{_HK_QUANTITY}OxygenSaturation": Metric.SPO2,
    f"{_HK_QUANTITY}BloodGlucose": Metric.BLOOD_GLUCOSE,
    f"{_HK_QUANTITY}RespiratoryRate": Metric.RESPIRATORY_RATE,
    f"{_HK_QUANTITY}BodyTemperature": Metric.BODY_TEMPERATURE,
    f"{_HK_QUANTITY}BloodPressureSystolic": Metric.SYSTOLIC_BP,
    f"{_HK_QUANTITY}BloodPressureDiastolic": Metric.DIASTOLIC_BP,
}
_HK_BLOOD_PRESSURE = "HKCorrelationTypeIdentifierBloodPressure"


@dataclass(frozen=True)
class AppleResult:
    """Samples mapped from one Apple payload, and how many entries of each other type were skipped."""

    samples: list[VendorSample] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def map_apple(body: Any, *, vendor_user: str) -> AppleResult:
    """Map a Health Auto Export document or an array of HealthKit-style samples."""
    if isinstance(body, dict) and "data" in body:
        return _map_hae(body, vendor_user)
    if isinstance(body, list):
        return _map_healthkit(body, vendor_user)
    raise PayloadError(
        ROOT, 'must be {"data": {"metrics": [...]}} or an array of HealthKit samples'
    )


def _map_hae(body: dict[str, Any], vendor_user: str) -> AppleResult:
    data = as_object(body["data"], "data")
    metrics = as_list(data.get("metrics", []), "data.metrics")
    samples: list[VendorSample] = []
    skipped: Counter[str] = Counter()
    for i, raw_metric in enumerate(metrics):
        path = item("data.metrics", i)
        metric_obj = as_object(raw_metric, path)
        name = need_str(metric_obj, "name", path)
        points = as_list(need(metric_obj, "data", path), at(path, "data"))
        carried = _HAE_METRICS.get(name)
        if carried is None:
            skipped[name] += len(points)
            continue
        units = need_str(metric_obj, "units", path)
        unit_of = {m: catalogue_unit(m, units, field=at(path, "units")) for _, m in carried}
        for j, point in enumerate(points):
            point_path = item(at(path, "data"), j)
            point_obj = as_object(point, point_path)
            for key, metric in carried:
                value = _hae_value(point_obj, key, metric, point_path)
                reading = (value, unit_of[metric])
                samples.append(
                    _hae_sample(vendor_user, name, metric, reading, point_obj, point_path)
                )
    return AppleResult(samples, dict(skipped))


def _hae_value(point: dict[str, Any], key: str, metric: Metric, path: str) -> float:
    if key == "Avg" and point.get("Avg") is None:
        key = "qty"  # a heart_rate point exported without aggregation
    value = need_number(point, key, path)
    return spo2_percent(value) if metric is Metric.SPO2 else value


def _hae_sample(
    vendor_user: str,
    name: str,
    metric: Metric,
    reading: tuple[float, str],
    point: dict[str, Any],
    path: str,
) -> VendorSample:
    measured_at = parse_apple_date(need(point, "date", path), at(path, "date"))
    source = opt_str(point, "source", path)
    source_id = f"{vendor_user}:{name}:{measured_at.isoformat()}:{metric.value}"
    source_id += f":{source}" if source else ""
    return VendorSample(vendor_user, metric, reading[0], reading[1], measured_at, source_id)


def _map_healthkit(body: list[Any], vendor_user: str) -> AppleResult:
    samples: list[VendorSample] = []
    skipped: Counter[str] = Counter()
    for i, raw in enumerate(body):
        path = item(ROOT, i)
        obj = as_object(raw, path)
        kind = need_str(obj, "type", path)
        if kind == _HK_BLOOD_PRESSURE:
            samples += _correlation(obj, path, vendor_user, skipped)
        elif kind in _HK_TYPES:
            samples.append(_quantity(obj, path, vendor_user, _HK_TYPES[kind], None))
        else:
            skipped[kind] += 1
    return AppleResult(samples, dict(skipped))


def _correlation(
    obj: dict[str, Any], path: str, vendor_user: str, skipped: Counter[str]
) -> list[VendorSample]:
    correlation_id = need_str(obj, "uuid", path)
    objects_path = at(path, "objects")
    samples: list[VendorSample] = []
    for i, raw in enumerate(as_list(need(obj, "objects", path), objects_path)):
        child_path = item(objects_path, i)
        child = as_object(raw, child_path)
        child_type = need_str(child, "type", child_path)
        metric = _HK_TYPES.get(child_type)
        if metric is None or metric not in (Metric.SYSTOLIC_BP, Metric.DIASTOLIC_BP):
            skipped[child_type] += 1
            continue
        samples.append(_quantity(child, child_path, vendor_user, metric, correlation_id))
    return samples


def _quantity(
    obj: dict[str, Any], path: str, vendor_user: str, metric: Metric, correlation_id: str | None
) -> VendorSample:
    value = need_number(obj, "value", path)
    unit = catalogue_unit(metric, need_str(obj, "unit", path), field=at(path, "unit"))
    if metric is Metric.SPO2:
        value = spo2_percent(value)
    measured_at = parse_apple_date(need(obj, "startDate", path), at(path, "startDate"))
    # A correlation's children may come without their own uuid; the correlation's then keys them.
    uuid = opt_str(obj, "uuid", path) if correlation_id else need_str(obj, "uuid", path)
    source_id = uuid or f"{correlation_id}:{metric.value}"
    return VendorSample(vendor_user, metric, value, unit, measured_at, source_id)


def parse_apple_date(value: object, path: str) -> datetime:
    """Parse HAE/export.xml "2024-02-06 14:30:00 -0300" or ISO-8601 with an offset, to UTC."""
    text = as_str(value, path)
    fast = _hae_instant(text)
    if fast is not None:
        return fast
    try:
        moment = datetime.strptime(text, _HAE_DATE_FORMAT)
    except ValueError:
        return parse_instant(text, path)
    return aware_utc(moment, path)


def _hae_instant(text: str) -> datetime | None:
    """The common "yyyy-MM-dd HH:mm:ss ±HHMM" shape via fromisoformat (strptime costs ~10x more
    per point); None sends anything else, or anything it refuses, down the strptime path."""
    if len(text) != 25 or text[10] != " " or text[19] != " " or text[20] not in "+-":
        return None
    try:
        return datetime.fromisoformat(text[:19] + text[20:]).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
