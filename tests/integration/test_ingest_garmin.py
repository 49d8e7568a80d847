"""Garmin push end to end: garmin-client-id, offset maps into readings.v1, idempotent re-pushes,
unknown and deregistered users and implausible values onto deadletter.v1, and refused bodies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared.topics import VENDOR_NOTIFICATIONS
from tests.fakes.idp import FakeIdP
from tests.fakes.server import ThreadedServer
from tests.integration.ingest_harness import (
    GARMIN_CLIENT_ID,
    START,
    Ingest,
    dead_letters,
    garmin_dailies,
    garmin_push,
    ingest_service,
    read_topic,
    readings,
)

pytestmark = pytest.mark.integration
USER = "4aacafe8-2427-4c25-9f9c-9592d0c06768"
PATIENT = "pt-garmin-1"
MAX_BODY = 16_384
HEART_RATE = {"0": 61, "15": 64, "30": 0, "45": 118}  # 0 is "no reading"
PUBLISHED = {k: v for k, v in HEART_RATE.items() if v > 0}


@pytest.fixture
async def ingest(broker: str, idp: FakeIdP, tmp_path: Path) -> AsyncIterator[Ingest]:
    async with ingest_service(broker, idp, tmp_path, ingest_max_body_bytes=MAX_BODY) as service:
        await service.connect({"vendor": "garmin", "vendor_user_id": USER, "patient_id": PATIENT})
        yield service


def dailies(
    summary_id: str = "sd-1", *, user: str = USER, samples: Mapping[str, float] | None = None
) -> bytes:
    """A dailies push for USER (by default) with the HEART_RATE offset map."""
    return garmin_dailies(user, summary_id, start=START, heart_rate=samples or HEART_RATE)


@pytest.mark.parametrize(
    "client_id", [GARMIN_CLIENT_ID.upper(), "", None], ids=["wrong", "empty", "missing"]
)
async def test_a_push_without_our_garmin_client_id_is_401_and_publishes_nothing(
    ingest: Ingest, client_id: str | None
) -> None:
    headers = {} if client_id is None else {"garmin-client-id": client_id}
    response = await ingest.post("/v1/webhooks/garmin/dailies", content=dailies(), headers=headers)
    assert response.status_code == 401, response.text
    assert await readings(ingest) == []
    assert await dead_letters(ingest) == []


async def test_an_offset_map_push_publishes_one_reading_per_sample(ingest: Ingest) -> None:
    response = await garmin_push(ingest, dailies())
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(PUBLISHED)
    published = await readings(ingest)
    start = datetime.fromtimestamp(START, UTC)
    assert sorted((r.measured_at, r.value) for r in published) == [
        (start + timedelta(seconds=int(offset)), bpm) for offset, bpm in PUBLISHED.items()
    ]
    for reading in published:
        assert (reading.metric, reading.unit, reading.code) == ("heart_rate", "/min", "8867-4")
        assert (reading.patient_id, reading.source) == (PATIENT, "garmin")


async def test_an_epochs_push_publishes_the_mean_heart_rate_at_the_bucket_start(
    ingest: Ingest,
) -> None:
    record = {
        "userId": USER,
        "summaryId": "se-1",
        "startTimeInSeconds": START,
        "startTimeOffsetInSeconds": -10800,
        "durationInSeconds": 900,
        "meanHeartRateInBeatsPerMinute": 77,
        "maxHeartRateInBeatsPerMinute": 101,
    }
    body = json.dumps({"epochs": [record]}).encode()
    response = await garmin_push(ingest, body, summary_type="epochs")
    assert response.status_code == 200, response.text
    [reading] = await readings(ingest)
    assert (reading.measured_at, reading.value, reading.unit) == (
        datetime.fromtimestamp(START, UTC),
        77,
        "/min",
    )


async def test_the_same_push_again_publishes_the_same_reading_ids(ingest: Ingest) -> None:
    assert (await garmin_push(ingest, dailies())).status_code == 200
    first = {r.reading_id for r in await readings(ingest)}
    again = await garmin_push(ingest, dailies())
    assert again.status_code == 200, again.text
    assert {r.reading_id for r in await readings(ingest)} == first
    assert len(first) == len(PUBLISHED)


async def test_a_per_type_push_publishes_every_summary_type_in_its_body(ingest: Ingest) -> None:
    # An overlapping backfill can mix types: the pulseox records in a dailies push are not lost.
    body = json.loads(dailies())
    body["pulseox"] = [
        {
            "userId": USER,
            "summaryId": "po-1",
            "startTimeInSeconds": START,
            "timeOffsetSpo2Values": {"60": 95},
        }
    ]
    body["someFutureType"] = [{"userId": USER}]
    response = await garmin_push(ingest, json.dumps(body).encode())
    assert response.status_code == 200, response.text
    outcome = response.json()
    assert outcome["accepted"] == len(PUBLISHED) + 1
    assert outcome["ignored"] == {"someFutureType": 1}
    published = await readings(ingest)
    spo2 = [(r.measured_at, r.value) for r in published if r.metric == "spo2"]
    assert spo2 == [(datetime.fromtimestamp(START + 60, UTC), 95)]
    assert sum(r.metric == "heart_rate" for r in published) == len(PUBLISHED)


async def test_a_push_for_an_unknown_user_is_acknowledged_and_dead_lettered(
    ingest: Ingest,
) -> None:
    response = await garmin_push(ingest, dailies(user="not-connected"))
    assert response.status_code == 200, response.text
    assert response.json()["dead_lettered"] == len(PUBLISHED)
    assert await readings(ingest) == []
    [letter] = await dead_letters(ingest)
    assert (letter.reason, letter.key) == ("unknown_vendor_user", "garmin:not-connected")
    assert len(json.loads(letter.payload)) == len(PUBLISHED)  # kept for a replay


@pytest.mark.parametrize(
    ("summary_type", "record", "reason"),
    [
        ("deregistrations", {"userId": USER}, "deregistration"),
        (
            "userPermissionsChange",
            {"userId": USER, "permissions": ["ACTIVITY_EXPORT"]},
            "health_export_withdrawn",
        ),
    ],
    ids=["deregistration", "health-export-withdrawn"],
)
async def test_after_a_deregistration_the_connection_is_revoked_and_pushes_dead_lettered(
    ingest: Ingest, summary_type: str, record: dict[str, object], reason: str
) -> None:
    body = json.dumps({summary_type: [record]}).encode()
    response = await garmin_push(ingest, body, summary_type=summary_type)
    assert response.status_code == 200, response.text
    connection = await ingest.connection(USER)
    assert (connection["status"], connection["status_reason"]) == ("revoked", reason)
    later = await garmin_push(ingest, dailies())
    assert later.status_code == 200, later.text
    assert await readings(ingest) == []
    [letter] = await dead_letters(ingest)
    assert letter.reason == "connection_revoked"


async def test_an_implausible_value_is_dead_lettered_and_the_valid_samples_published(
    ingest: Ingest,
) -> None:
    samples = {"0": 70, "15": 400, "30": 72}
    response = await garmin_push(ingest, dailies(samples=samples))
    assert response.status_code == 200, response.text
    assert (response.json()["accepted"], response.json()["dead_lettered"]) == (2, 1)
    assert sorted(r.value for r in await readings(ingest)) == [70, 72]
    [letter] = await dead_letters(ingest)
    assert letter.reason == "invalid_value"
    assert "heart_rate" in letter.detail
    assert [s["value"] for s in json.loads(letter.payload)] == [400]


@pytest.mark.parametrize(
    ("summary_type", "content", "content_type", "status", "needle"),
    [
        ("sleepyTime", b'{"sleepyTime": []}', "application/json", 422, "sleepyTime"),
        ("dailies", b'{"dailies": [', "application/json", 400, "JSON"),
        ("dailies", b"dailies=1", "application/x-www-form-urlencoded", 415, "application/json"),
        ("dailies", b" " * (MAX_BODY + 1), "application/json", 413, "body_too_large"),
    ],
    ids=["unknown-summary-type", "malformed-json", "wrong-content-type", "too-large"],
)
async def test_a_push_garmin_cannot_have_meant_is_refused_naming_the_problem(
    ingest: Ingest,
    summary_type: str,
    content: bytes,
    content_type: str,
    status: int,
    needle: str,
) -> None:
    response = await garmin_push(
        ingest, content, summary_type=summary_type, headers={"Content-Type": content_type}
    )
    assert response.status_code == status, response.text
    assert needle in response.text
    assert await readings(ingest) == []
    assert await dead_letters(ingest) == []


@pytest.fixture
def garmin_api() -> Iterator[str]:
    """A loopback stand-in for Garmin's pull API: GET .../dailies answers one dailies record."""
    record = json.loads(dailies("sd-ping"))["dailies"][0]

    async def pulled(request: Request) -> JSONResponse:
        return JSONResponse([record] if request.query_params.get("token") == "XYZ" else [])

    server = ThreadedServer(
        Starlette(routes=[Route("/wellness-api/rest/dailies", pulled)]), name="Garmin"
    )
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def ping(callback: str) -> bytes:
    return json.dumps({"dailies": [{"userId": USER, "callbackURL": callback}]}).encode()


async def test_a_ping_is_acknowledged_then_its_callback_pulled_into_readings(
    broker: str, idp: FakeIdP, tmp_path: Path, garmin_api: str
) -> None:
    async with ingest_service(broker, idp, tmp_path, garmin_api_base_url=garmin_api) as ingest:
        await ingest.connect({"vendor": "garmin", "vendor_user_id": USER, "patient_id": PATIENT})
        callback = f"{garmin_api}/wellness-api/rest/dailies?uploadStartTimeInSeconds=1&token=XYZ"
        response = await garmin_push(ingest, ping(callback))
        assert response.status_code == 200, response.text
        assert (response.json()["pulls_queued"], response.json()["accepted"]) == (1, 0)
        published = await readings(ingest, count=len(PUBLISHED))
        assert sorted(r.value for r in published) == sorted(PUBLISHED.values())
        assert {r.patient_id for r in published} == {PATIENT}


async def test_a_ping_whose_callback_is_not_on_the_garmin_api_origin_is_refused(
    ingest: Ingest,
) -> None:
    # The callback is fetched server-side: anything but GARMIN_API_BASE_URL's origin is refused.
    response = await garmin_push(ingest, ping("https://attacker.example/dailies?token=XYZ"))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == "dailies[0].callbackURL"
    assert await read_topic(ingest.bootstrap, VENDOR_NOTIFICATIONS) == []


def permissions(*granted: str) -> bytes:
    return json.dumps(
        {"userPermissionsChange": [{"userId": USER, "permissions": granted}]}
    ).encode()


async def test_granting_health_export_again_reactivates_only_a_connection_it_revoked(
    ingest: Ingest,
) -> None:
    withdrawn = await garmin_push(
        ingest, permissions("ACTIVITY_EXPORT"), summary_type="userPermissionsChange"
    )
    assert withdrawn.status_code == 200, withdrawn.text
    granted = await garmin_push(
        ingest, permissions("HEALTH_EXPORT"), summary_type="userPermissionsChange"
    )
    assert granted.status_code == 200, granted.text
    connection = await ingest.connection(USER)
    assert (connection["status"], connection["status_reason"]) == ("active", "permissions_changed")


async def test_a_permissions_change_does_not_undo_a_deregistration(ingest: Ingest) -> None:
    body = json.dumps({"deregistrations": [{"userId": USER}]}).encode()
    assert (await garmin_push(ingest, body, summary_type="deregistrations")).status_code == 200
    granted = await garmin_push(
        ingest, permissions("HEALTH_EXPORT"), summary_type="userPermissionsChange"
    )
    assert granted.status_code == 200, granted.text
    connection = await ingest.connection(USER)
    assert (connection["status"], connection["status_reason"]) == ("revoked", "deregistration")
    assert (await garmin_push(ingest, dailies())).status_code == 200
    assert await readings(ingest) == []


async def test_a_pulled_record_of_another_garmin_user_goes_to_that_users_patient(
    broker: str, idp: FakeIdP, tmp_path: Path
) -> None:
    other, other_patient = "garmin-other-user", "pt-garmin-2"
    records = [
        json.loads(dailies("sd-mine"))["dailies"][0],
        json.loads(dailies("sd-theirs", user=other, samples={"0": 77}))["dailies"][0],
    ]

    async def pulled(_: Request) -> JSONResponse:
        return JSONResponse(records)

    server = ThreadedServer(
        Starlette(routes=[Route("/wellness-api/rest/dailies", pulled)]), name="Garmin"
    )
    server.start()
    api = f"http://127.0.0.1:{server.port}"
    try:
        async with ingest_service(broker, idp, tmp_path, garmin_api_base_url=api) as ingest:
            await ingest.connect(
                {"vendor": "garmin", "vendor_user_id": USER, "patient_id": PATIENT}
            )
            await ingest.connect(
                {"vendor": "garmin", "vendor_user_id": other, "patient_id": other_patient}
            )
            callback = f"{api}/wellness-api/rest/dailies?uploadStartTimeInSeconds=1&token=XYZ"
            assert (await garmin_push(ingest, ping(callback))).status_code == 200
            published = await readings(ingest, count=len(PUBLISHED) + 1)
            by_patient = {(r.patient_id, r.value) for r in published}
            assert (other_patient, 77) in by_patient
            assert {v for p, v in by_patient if p == PATIENT} == set(PUBLISHED.values())
    finally:
        server.stop()
