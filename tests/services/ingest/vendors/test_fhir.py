"""FHIR R4 vital-signs Observations (and Bundles of them) → (patient id, sample).

Codes and units are the reference's (§7: hl7.org vital-signs profile, LOINC, UCUM value sets).
The Observations follow the shape of the FHIR R4 spec examples (observation-example-heart-rate,
-bloodpressure, DSTU2 glucose f001) with full date-times; the spec's heart-rate example has a
date-only effectiveDateTime, which cannot place a reading in time (see the malformed cases).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.ingest.vendors.common import PayloadError
from services.ingest.vendors.fhir import map_fhir
from shared.vitals import Metric

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VITAL_SIGNS = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "vital-signs",
            }
        ]
    }
]


def observation(
    code: str | list[str], quantity: dict[str, Any] | None, **extra: Any
) -> dict[str, Any]:
    codes = [code] if isinstance(code, str) else code
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "obs-1",
        "status": "final",
        "category": VITAL_SIGNS,
        "code": {"coding": [{"system": LOINC, "code": c} for c in codes]},
        "subject": {"reference": "Patient/example"},
        "effectiveDateTime": "2024-05-01T08:30:00-03:00",
    }
    if quantity is not None:
        resource["valueQuantity"] = {"system": UCUM, **quantity}
    return {**resource, **extra}


HEART_RATE = observation(
    "8867-4", {"value": 44, "unit": "beats/minute", "code": "/min"}, id="heart-rate"
)
BLOOD_PRESSURE = {
    **observation("85354-9", None, id="blood-pressure"),
    "component": [
        {
            "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
            "valueQuantity": {"value": 107, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        },
        {
            "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
            "valueQuantity": {"value": 60, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        },
    ],
}
# DSTU2 example f001 shape: glucose 15074-8 in mmol/L, effectivePeriod, business identifier.
GLUCOSE = {
    **observation(
        "15074-8",
        {"value": 6.3, "unit": "mmol/l", "code": "mmol/L"},
        effectivePeriod={"start": "2013-04-02T09:30:10+01:00"},
    ),
    "identifier": [
        {
            "use": "official",
            "system": "http://www.bmc.nl/zorgportal/identifiers/observations",
            "value": "6323",
        }
    ],
}
del GLUCOSE["id"], GLUCOSE["effectiveDateTime"]

AT = datetime(2024, 5, 1, 11, 30, tzinfo=UTC)


def test_a_heart_rate_observation_maps_to_its_patient_and_sample() -> None:
    ((patient, sample),) = map_fhir(HEART_RATE)
    assert patient == "example" == sample.vendor_user
    assert (sample.metric, sample.value, sample.unit, sample.measured_at) == (
        Metric.HEART_RATE,
        44.0,
        "/min",
        AT,
    )
    assert sample.source_id == "heart-rate"


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        # US Core pulse oximetry carries both 59408-5 and 2708-6.
        (
            observation(["59408-5", "2708-6"], {"value": 96, "unit": "%", "code": "%"}),
            (Metric.SPO2, 96.0, "%"),
        ),
        (observation("2708-6", {"value": 97, "unit": "%", "code": "%"}), (Metric.SPO2, 97.0, "%")),
        (
            observation("9279-1", {"value": 18, "unit": "breaths/minute", "code": "/min"}),
            (Metric.RESPIRATORY_RATE, 18.0, "/min"),
        ),
        (
            observation("8310-5", {"value": 36.5, "unit": "C", "code": "Cel"}),
            (Metric.BODY_TEMPERATURE, 36.5, "Cel"),
        ),
        (
            observation("8310-5", {"value": 99.5, "unit": "F", "code": "[degF]"}),
            (Metric.BODY_TEMPERATURE, 99.5, "[degF]"),
        ),
        (
            observation("8867-4", {"value": 70, "unit": "bpm", "code": "{beats}/min"}),
            (Metric.HEART_RATE, 70.0, "{beats}/min"),
        ),
        (
            observation("2339-0", {"value": 95, "unit": "mg/dL", "code": "mg/dL"}),
            (Metric.BLOOD_GLUCOSE, 95.0, "mg/dL"),
        ),
        (
            observation("99504-3", {"value": 120, "unit": "mg/dL", "code": "mg/dL"}),
            (Metric.BLOOD_GLUCOSE, 120.0, "mg/dL"),
        ),
        # No UCUM system: the human `unit` is what is left to read.
        (
            {**observation("8867-4", None), "valueQuantity": {"value": 61, "unit": "bpm"}},
            (Metric.HEART_RATE, 61.0, "bpm"),
        ),
    ],
)
def test_each_carried_loinc_code_maps_to_its_metric(
    resource: dict[str, Any], expected: tuple[Metric, float, str]
) -> None:
    ((_, sample),) = map_fhir(resource)
    assert (sample.metric, sample.value, sample.unit) == expected
    assert sample.measured_at == AT


def test_a_glucose_lab_observation_uses_its_period_start_and_business_identifier() -> None:
    ((patient, sample),) = map_fhir(GLUCOSE)
    assert patient == "example"
    assert (sample.metric, sample.value, sample.unit) == (Metric.BLOOD_GLUCOSE, 6.3, "mmol/L")
    assert sample.measured_at == datetime(2013, 4, 2, 8, 30, 10, tzinfo=UTC)
    assert sample.source_id == "http://www.bmc.nl/zorgportal/identifiers/observations|6323"


def test_a_blood_pressure_panel_yields_one_sample_per_component() -> None:
    readings = map_fhir(BLOOD_PRESSURE)
    assert [(p, s.metric, s.value, s.unit, s.source_id) for p, s in readings] == [
        ("example", Metric.SYSTOLIC_BP, 107.0, "mm[Hg]", "blood-pressure:systolic_bp"),
        ("example", Metric.DIASTOLIC_BP, 60.0, "mm[Hg]", "blood-pressure:diastolic_bp"),
    ]


def test_a_bundle_maps_its_carried_observations_and_passes_over_the_rest() -> None:
    weight = observation("29463-7", {"value": 70, "unit": "kg", "code": "kg"}, id="weight")
    no_id = {k: v for k, v in HEART_RATE.items() if k != "id"}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "id": "example"}},
            {"resource": HEART_RATE},
            {"resource": weight},
            {"fullUrl": "urn:uuid:0f8c2a8e", "resource": no_id},
            {"request": {"method": "DELETE", "url": "Observation/old"}},
            {"resource": BLOOD_PRESSURE},
        ],
    }
    readings = map_fhir(bundle)
    assert [s.source_id for _, s in readings] == [
        "heart-rate",
        "urn:uuid:0f8c2a8e",
        "blood-pressure:systolic_bp",
        "blood-pressure:diastolic_bp",
    ]


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/example",
        "https://fhir.example.org/r4/Patient/example",
        "Patient/example/_history/3",
    ],
)
def test_the_patient_id_comes_from_the_subject_reference(reference: str) -> None:
    ((patient, _),) = map_fhir({**HEART_RATE, "subject": {"reference": reference}})
    assert patient == "example"


@pytest.mark.parametrize("status", ["final", "amended", "corrected"])
def test_final_amended_and_corrected_results_are_accepted(status: str) -> None:
    assert len(map_fhir({**HEART_RATE, "status": status})) == 1


def test_an_absent_value_with_a_reason_maps_to_nothing() -> None:
    absent = {
        **observation("8867-4", None),
        "dataAbsentReason": {"coding": [{"code": "asked-declined"}]},
    }
    assert map_fhir(absent) == []


def test_an_empty_bundle_maps_to_nothing() -> None:
    assert map_fhir({"resourceType": "Bundle", "type": "collection"}) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([HEART_RATE], "$"),
        ({"resourceType": "Patient", "id": "x"}, "resourceType"),
        ({**HEART_RATE, "status": "preliminary"}, "status"),
        ({**HEART_RATE, "status": "entered-in-error"}, "status"),
        ({**HEART_RATE, "status": None}, "status"),
        (
            {
                "resourceType": "Bundle",
                "entry": [
                    {"resource": HEART_RATE},
                    {"resource": {**HEART_RATE, "status": "registered"}},
                ],
            },
            "entry[1].resource.status",
        ),
        ({"resourceType": "Bundle", "entry": {"resource": HEART_RATE}}, "entry"),
        ({**HEART_RATE, "subject": {"reference": "Group/ward-3"}}, "subject.reference"),
        ({**HEART_RATE, "subject": {"display": "Jane"}}, "subject.reference"),
        ({k: v for k, v in HEART_RATE.items() if k != "subject"}, "subject"),
        (
            {**HEART_RATE, "effectiveDateTime": "1999-07-02"},
            "effectiveDateTime",
        ),  # date only: no instant
        ({**HEART_RATE, "effectiveDateTime": "2024-05-01T08:30:00"}, "effectiveDateTime"),
        ({k: v for k, v in HEART_RATE.items() if k != "effectiveDateTime"}, "effectiveDateTime"),
        (
            {
                **HEART_RATE,
                "effectiveDateTime": None,
                "effectivePeriod": {"end": "2024-05-01T08:30:00Z"},
            },
            "effectivePeriod.start",
        ),
        (
            {**HEART_RATE, "valueQuantity": {"value": 44, "system": UCUM, "code": "kg"}},
            "valueQuantity.code",
        ),
        (
            {**HEART_RATE, "valueQuantity": {"value": "44", "system": UCUM, "code": "/min"}},
            "valueQuantity.value",
        ),
        ({**HEART_RATE, "valueQuantity": {"value": 44}}, "valueQuantity.code"),
        ({k: v for k, v in HEART_RATE.items() if k != "valueQuantity"}, "valueQuantity"),
        ({k: v for k, v in HEART_RATE.items() if k != "code"}, "code"),
        ({**HEART_RATE, "code": {"coding": "8867-4"}}, "code.coding"),
        ({k: v for k, v in HEART_RATE.items() if k != "id"}, "id"),
        ({**BLOOD_PRESSURE, "component": []}, "component"),
        (
            {
                **BLOOD_PRESSURE,
                "component": [{"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}}],
            },
            "component[0].valueQuantity",
        ),
    ],
)
def test_a_malformed_observation_names_the_culprit(body: Any, field: str) -> None:
    with pytest.raises(PayloadError) as caught:
        map_fhir(body)
    assert caught.value.field == field
