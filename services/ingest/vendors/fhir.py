"""FHIR R4 vital-signs (and glucose laboratory) Observations → (patient id, sample) pairs.

Source of truth: shared/reference/vendor-formats.md §7 (base vital-signs profile, LOINC and UCUM
codes; confirmed). Accepted: one Observation, or a Bundle whose `entry[].resource`s are
Observations (other resource types in the Bundle, e.g. the Patient of a transaction, are passed
over). An Observation is mapped when one of its LOINC codings is a vital we carry; others (body
weight, BMI, ...) are passed over. A carried Observation must be `final`, `amended` or `corrected`:
anything else (preliminary, entered-in-error, ...) is a PayloadError, as is a subject that is not
a `Patient/<id>` reference. An Observation with `dataAbsentReason` instead of a value maps to
nothing. The BP panel 85354-9 yields one sample per systolic/diastolic component.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, NamedTuple

from services.ingest.vendors.common import PayloadError, VendorSample
from services.ingest.vendors.units import catalogue_unit
from services.ingest.vendors.wire import (
    ROOT,
    as_list,
    as_object,
    at,
    item,
    need,
    need_number,
    need_str,
    opt_str,
    parse_instant,
)
from shared.vitals import Metric

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
BP_PANEL = "85354-9"
_FINAL_STATUSES = frozenset({"final", "amended", "corrected"})

_CODES: dict[str, Metric] = {
    "8867-4": Metric.HEART_RATE,
    "59408-5": Metric.SPO2,  # US Core pulse oximetry
    "2708-6": Metric.SPO2,  # core vital-signs profile
    "9279-1": Metric.RESPIRATORY_RATE,
    "8310-5": Metric.BODY_TEMPERATURE,
    "8480-6": Metric.SYSTOLIC_BP,
    "8462-4": Metric.DIASTOLIC_BP,
    # Glucose is a laboratory Observation (§7); 97507-8 (an average over a period) is left out.
    "2339-0": Metric.BLOOD_GLUCOSE,
    "15074-8": Metric.BLOOD_GLUCOSE,
    "41653-7": Metric.BLOOD_GLUCOSE,
    "14743-9": Metric.BLOOD_GLUCOSE,
    "2345-7": Metric.BLOOD_GLUCOSE,
    "14749-6": Metric.BLOOD_GLUCOSE,
    "99504-3": Metric.BLOOD_GLUCOSE,
}
# "Patient/<id>", optionally absolute ("https://server/fhir/Patient/<id>") and versioned.
_PATIENT_REF = re.compile(
    r"^(?:https?://[^\s]+/)?Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)


class FhirReading(NamedTuple):
    """A sample and the id of the FHIR Patient it belongs to (also its `vendor_user`)."""

    patient_id: str
    sample: VendorSample


def map_fhir(body: Any) -> list[FhirReading]:
    """Map an Observation or a Bundle of Observations to (patient id, sample) pairs."""
    doc = as_object(body, ROOT)
    kind = need_str(doc, "resourceType", ROOT)
    if kind == "Observation":
        return _observation(doc, ROOT, None)
    if kind != "Bundle":
        raise PayloadError("resourceType", f"must be Observation or Bundle, got {kind!r}")
    readings: list[FhirReading] = []
    for i, raw_entry in enumerate(as_list(doc.get("entry", []), "entry")):
        path = item("entry", i)
        entry = as_object(raw_entry, path)
        if entry.get("resource") is None:  # e.g. a transaction's DELETE request
            continue
        resource = as_object(entry["resource"], at(path, "resource"))
        if resource.get("resourceType") == "Observation":
            full_url = opt_str(entry, "fullUrl", path)
            readings += _observation(resource, at(path, "resource"), full_url)
    return readings


def _observation(obs: dict[str, Any], path: str, full_url: str | None) -> list[FhirReading]:
    code = _carried_code(obs, path)
    if code is None:
        return []
    status = need_str(obs, "status", path)
    if status not in _FINAL_STATUSES:
        raise PayloadError(
            at(path, "status"), f"must be final, amended or corrected, got {status!r}"
        )
    panel = code == BP_PANEL
    values = _components(obs, path) if panel else _value(obs, path, _CODES[code])
    if not values:
        return []
    patient = _patient(obs, path)
    measured_at = _effective(obs, path)
    base_id = _source_id(obs, path, full_url)
    readings: list[FhirReading] = []
    for metric, quantity, quantity_path in values:
        source_id = f"{base_id}:{metric.value}" if panel else base_id
        sample = _sample(patient, metric, quantity, quantity_path, measured_at, source_id)
        readings.append(FhirReading(patient, sample))
    return readings


def _value(obs: dict[str, Any], path: str, metric: Metric) -> list[tuple[Metric, object, str]]:
    if obs.get("valueQuantity") is None:
        if obs.get("dataAbsentReason") is not None:
            return []
        raise PayloadError(at(path, "valueQuantity"), "is required (or dataAbsentReason)")
    return [(metric, obs["valueQuantity"], at(path, "valueQuantity"))]


def _carried_code(obj: dict[str, Any], path: str) -> str | None:
    code_path = at(path, "code")
    codings_path = at(code_path, "coding")
    codings = as_list(as_object(need(obj, "code", path), code_path).get("coding", []), codings_path)
    for i, raw in enumerate(codings):
        coding = as_object(raw, item(codings_path, i))
        code = coding.get("code")
        if (
            coding.get("system") == LOINC
            and isinstance(code, str)
            and (code in _CODES or code == BP_PANEL)
        ):
            return code
    return None


def _components(obs: dict[str, Any], path: str) -> list[tuple[Metric, object, str]]:
    components_path = at(path, "component")
    values: list[tuple[Metric, object, str]] = []
    found = False
    for i, raw in enumerate(as_list(obs.get("component", []), components_path)):
        component_path = item(components_path, i)
        component = as_object(raw, component_path)
        metric = _CODES.get(_carried_code(component, component_path) or "")
        if metric is None or metric not in (Metric.SYSTOLIC_BP, Metric.DIASTOLIC_BP):
            continue
        found = True
        values += _value(component, component_path, metric)
    if not found:
        raise PayloadError(
            components_path, "has no systolic (8480-6) or diastolic (8462-4) component"
        )
    return values


def _sample(
    patient: str, metric: Metric, quantity: object, path: str, measured_at: datetime, source_id: str
) -> VendorSample:
    obj = as_object(quantity, path)
    value = need_number(obj, "value", path)
    # The UCUM `code` is authoritative when the system is UCUM; `unit` is the human rendering.
    key = "code" if obj.get("system") == UCUM and obj.get("code") is not None else "unit"
    if obj.get(key) is None:
        key = "code"
    unit = catalogue_unit(metric, need_str(obj, key, path), field=at(path, key))
    return VendorSample(patient, metric, value, unit, measured_at, source_id)


def _patient(obs: dict[str, Any], path: str) -> str:
    subject_path = at(path, "subject")
    subject = as_object(need(obs, "subject", path), subject_path)
    reference = need_str(subject, "reference", subject_path)
    match = _PATIENT_REF.match(reference)
    if match is None:
        raise PayloadError(at(subject_path, "reference"), "must reference a Patient (Patient/<id>)")
    return match.group(1)


def _effective(obs: dict[str, Any], path: str) -> datetime:
    for key in ("effectiveDateTime", "effectiveInstant"):
        if obs.get(key) is not None:
            return parse_instant(obs[key], at(path, key))
    if obs.get("effectivePeriod") is not None:
        period_path = at(path, "effectivePeriod")
        period = as_object(obs["effectivePeriod"], period_path)
        return parse_instant(need(period, "start", period_path), at(period_path, "start"))
    raise PayloadError(at(path, "effectiveDateTime"), "is required (or effectivePeriod.start)")


def _source_id(obs: dict[str, Any], path: str, full_url: str | None) -> str:
    observation_id = opt_str(obs, "id", path)
    if observation_id:
        return observation_id
    identifiers_path = at(path, "identifier")
    identifiers = as_list(obs.get("identifier", []), identifiers_path)
    if identifiers:
        first = as_object(identifiers[0], item(identifiers_path, 0))
        value = need_str(first, "value", item(identifiers_path, 0))
        system = opt_str(first, "system", item(identifiers_path, 0))
        return f"{system}|{value}" if system else value
    if full_url:
        return full_url
    raise PayloadError(at(path, "id"), "is required (or identifier, or the Bundle entry's fullUrl)")
