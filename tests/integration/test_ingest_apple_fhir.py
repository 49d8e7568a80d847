"""Apple Health (device key; Health Auto Export and HealthKit-style JSON) and FHIR Observations end
to end: unit conversions and codes as they land on readings.v1."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.vitals import GLUCOSE_MMOL_TO_MG_DL
from tests.conftest import bearer
from tests.fakes.idp import FakeIdP
from tests.integration.ingest_harness import (
    Ingest,
    apple_hr_body,
    ingest_service,
    readings,
)

pytestmark = pytest.mark.integration
APPLE = "/v1/webhooks/apple-health"
FHIR = "/v1/fhir/Observation"
AT = "2024-05-01T09:00:00-03:00"
UTC_AT = datetime.fromisoformat("2024-05-01T12:00:00+00:00")
GLUCOSE_MG_DL = round(5.5 * GLUCOSE_MMOL_TO_MG_DL, 3)
# (metric, value, unit, LOINC) on readings.v1 for every Apple body below.
EXPECTED = {
    ("heart_rate", 72, "/min", "8867-4"),
    ("spo2", 97, "%", "59408-5"),
    ("blood_glucose", GLUCOSE_MG_DL, "mg/dL", "2339-0"),
    ("systolic_bp", 128, "mm[Hg]", "8480-6"),
    ("diastolic_bp", 84, "mm[Hg]", "8462-4"),
}


@pytest.fixture
async def ingest(broker: str, idp: FakeIdP, tmp_path: Path) -> AsyncIterator[Ingest]:
    async with ingest_service(broker, idp, tmp_path) as service:
        yield service


def health_auto_export() -> dict[str, Any]:
    """A Health Auto Export REST body (vendor-formats §5.2) with one step count to skip."""

    def metric(name: str, units: str, **point: Any) -> dict[str, Any]:
        return {
            "name": name,
            "units": units,
            "data": [{"date": "2024-05-01 09:00:00 -0300", **point}],
        }

    return {
        "data": {
            "metrics": [
                metric("heart_rate", "count/min", Min=70, Avg=72, Max=75, source="Apple Watch"),
                metric("blood_oxygen_saturation", "%", qty=0.97),
                metric("blood_glucose", "mmol/L", qty=5.5, mealTime="Before Meal"),
                metric("blood_pressure", "mmHg", systolic=128, diastolic=84),
                metric("step_count", "count", qty=1200),
            ],
            "workouts": [],
        }
    }


def healthkit_samples() -> list[dict[str, Any]]:
    """HealthKit-style samples (vendor-formats §5.4): SpO2 as HKUnit.percent() 0.0-1.0, glucose
    in mmol with its molar mass, blood pressure as a correlation of two samples."""

    def sample(kind: str, uuid: str, value: float, unit: str) -> dict[str, Any]:
        return {
            "type": f"HKQuantityTypeIdentifier{kind}",
            "uuid": uuid,
            "value": value,
            "unit": unit,
            "startDate": AT,
            "endDate": AT,
        }

    return [
        sample("HeartRate", "A1", 72, "count/min"),
        sample("OxygenSaturation", "A2", 0.97, "%"),
        sample("BloodGlucose", "A3", 5.5, "mmol<180.1558800000541>/L"),
        {
            "type": "HKCorrelationTypeIdentifierBloodPressure",
            "uuid": "A4",
            "startDate": AT,
            "endDate": AT,
            "objects": [
                sample("BloodPressureSystolic", "A5", 128, "mmHg"),
                sample("BloodPressureDiastolic", "A6", 84, "mmHg"),
            ],
        },
        sample("StepCount", "A7", 1200, "count"),
    ]


async def post_apple(ingest: Ingest, key: str, body: bytes) -> httpx.Response:
    return await ingest.post(APPLE, content=body, headers={"Authorization": f"Bearer {key}"})


@pytest.mark.parametrize(
    "body", [health_auto_export(), healthkit_samples()], ids=["health-auto-export", "healthkit"]
)
async def test_apple_health_bodies_become_canonical_readings(ingest: Ingest, body: Any) -> None:
    created = await ingest.connect({"vendor": "apple_health", "patient_id": "pt-apple-1"})
    response = await post_apple(ingest, created["device_key"], json.dumps(body).encode())
    assert response.status_code == 202, response.text
    outcome = response.json()
    assert outcome["accepted"] == len(EXPECTED)
    assert sum(outcome["skipped"].values()) == 1
    published = await readings(ingest)
    assert {(r.metric, r.value, r.unit, r.code) for r in published} == EXPECTED
    assert {(r.patient_id, r.source, r.measured_at) for r in published} == {
        ("pt-apple-1", "apple_health", UTC_AT)
    }


@pytest.mark.parametrize("key", ["none", "malformed", "unknown", "wrong-secret"])
async def test_apple_health_without_the_device_key_is_401(ingest: Ingest, key: str) -> None:
    created = await ingest.connect({"vendor": "apple_health", "patient_id": "pt-apple-2"})
    issued: str = created["device_key"]
    body = apple_hr_body(bpm=64, at="2024-05-01 09:00:00 -0300")
    headers = {"Authorization": f"Bearer {issued}"}
    if key == "none":
        headers = {}
    elif key == "malformed":
        headers["Authorization"] = "Bearer not-a-device-key"
    elif key == "unknown":
        headers["Authorization"] = f"Bearer hak_{'0' * 16}_{issued.rsplit('_', 1)[1]}"
    else:  # the issued key id with another secret of the right shape
        headers["Authorization"] = f"Bearer {issued[:-1]}{'A' if issued[-1] != 'A' else 'B'}"
    response = await ingest.post(APPLE, content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert await readings(ingest) == []


def observation(obs_id: str, code: str, *, status: str = "final", **value: Any) -> dict[str, Any]:
    """A vital-signs Observation for Patient/pt-fhir-1 (vendor-formats §7)."""
    return {
        "resourceType": "Observation",
        "id": obs_id,
        "status": status,
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": "Patient/pt-fhir-1"},
        "effectiveDateTime": AT,
        **value,
    }


def quantity(value: float, code: str) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": "http://unitsofmeasure.org", "code": code}


def bp_component(code: str, value: float) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "valueQuantity": quantity(value, "mm[Hg]"),
    }


def bundle(*, heart_rate_status: str = "final") -> bytes:
    heart = observation(
        "hr-1", "8867-4", status=heart_rate_status, valueQuantity=quantity(88, "/min")
    )
    bp = observation(
        "bp-1",
        "85354-9",
        component=[bp_component("8480-6", 131), bp_component("8462-4", 79)],
    )
    entries = [{"fullUrl": f"urn:uuid:{o['id']}", "resource": o} for o in (heart, bp)]
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}).encode()


async def post_fhir(ingest: Ingest, body: bytes) -> httpx.Response:
    headers = {**bearer(ingest.idp, "readings:write"), "Content-Type": "application/fhir+json"}
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        return await client.post(FHIR, content=body, headers=headers)


async def test_a_fhir_bundle_of_heart_rate_and_a_bp_panel_becomes_readings(
    ingest: Ingest,
) -> None:
    response = await post_fhir(ingest, bundle())
    assert response.status_code == 202, response.text
    published = await readings(ingest)
    assert sorted(response.json()["reading_ids"]) == sorted(r.reading_id for r in published)
    assert {(r.metric, r.value, r.unit, r.code) for r in published} == {
        ("heart_rate", 88, "/min", "8867-4"),
        ("systolic_bp", 131, "mm[Hg]", "8480-6"),
        ("diastolic_bp", 79, "mm[Hg]", "8462-4"),
    }
    assert {(r.patient_id, r.source, r.measured_at) for r in published} == {
        ("pt-fhir-1", "fhir", UTC_AT)
    }


async def test_a_non_final_observation_is_422_naming_its_status_path(ingest: Ingest) -> None:
    response = await post_fhir(ingest, bundle(heart_rate_status="preliminary"))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert [d["field"] for d in error["details"]] == ["entry[0].resource.status"]
    assert "preliminary" in error["message"]
    assert await readings(ingest) == []


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        (
            '[{"type":"HKQuantityTypeIdentifierHeartRate","unit":"count/min",'
            '"startDate":"2024-05-01T09:00:00Z","value":1' + "0" * 400 + ',"uuid":"x1"}]',
            "[0].value",
            "out of range",
        ),
        (
            '[{"type":"HKQuantityTypeIdentifierHeartRate","unit":"count/min",'
            '"startDate":"2024-05-01T09:00:00Z","value":60,"uuid":"\\ud800"}]',
            "[0].uuid",
            "not valid Unicode",
        ),
    ],
    ids=["huge-int", "lone-surrogate"],
)
async def test_apple_health_huge_number_or_lone_surrogate_is_422_naming_the_field(
    ingest: Ingest, body: str, field: str, problem: str
) -> None:
    created = await ingest.connect({"vendor": "apple_health", "patient_id": "pt-apple-3"})
    response = await post_apple(ingest, created["device_key"], body.encode())
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert field in message and problem in message
    assert await readings(ingest) == []
