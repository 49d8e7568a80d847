"""A body that is not JSON gets one answer on every ingest route that takes JSON: 400
`malformed_json` naming the problem (clients and vendors need to handle one code, not two)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from deploy.embedded_broker import free_port
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from tests.conftest import auth_settings, bearer
from tests.fakes.fitbit import FakeFitbit
from tests.fakes.google_health import FakeGoogleHealth
from tests.fakes.idp import FakeIdP

GARMIN_CLIENT_ID = "garmin-consumer-key-test"
NOT_JSON = b'{"readings": ['


@pytest.fixture
async def client(idp: FakeIdP) -> AsyncIterator[httpx.AsyncClient]:
    # No broker: a body that got past parsing would be refused with 503, not 400.
    settings = IngestSettings(
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        fitbit_client_secret=FakeFitbit.client_secret,
        google_health_webhook_secret=FakeGoogleHealth.endpoint_secret,
        garmin_client_id=GARMIN_CLIENT_ID,
        **auth_settings(idp),
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as c:
        yield c


def route_headers(route: str, idp: FakeIdP, body: bytes = NOT_JSON) -> dict[str, str]:
    """What each caller sends with its body: the credential the route checks before parsing."""
    json_type = {"Content-Type": "application/json"}
    if route == "/v1/webhooks/fitbit":
        return {**json_type, "X-Fitbit-Signature": FakeFitbit().sign(body)}
    if route == "/v1/webhooks/google-health":
        return {**json_type, **FakeGoogleHealth().webhook_headers(body)}
    if route == "/v1/webhooks/garmin/dailies":
        return {**json_type, "garmin-client-id": GARMIN_CLIENT_ID}
    if route == "/v1/fhir/Observation":
        return {**bearer(idp, "readings:write"), "Content-Type": "application/fhir+json"}
    return {**bearer(idp, "readings:write"), **json_type}


@pytest.mark.parametrize(
    "route",
    [
        "/v1/readings",
        "/v1/fhir/Observation",
        "/v1/webhooks/fitbit",
        "/v1/webhooks/google-health",
        "/v1/webhooks/garmin/dailies",
    ],
)
async def test_a_body_that_is_not_json_is_400_malformed_json_on_every_route(
    client: httpx.AsyncClient, idp: FakeIdP, route: str
) -> None:
    response = await client.post(route, content=NOT_JSON, headers=route_headers(route, idp))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "malformed_json"
    assert error["message"].startswith("request body is not valid JSON")


HUGE = "1" + "0" * 400  # a JSON integer no float can hold
GARMIN_DAILY = (
    '{"dailies":[{"userId":"u1","summaryId":%s,"startTimeInSeconds":1714550400,'
    '"timeOffsetHeartRateSamples":{"0":%s}}]}'
)
FHIR_HR = (
    '{"resourceType":"Observation","id":%s,"status":"final","subject":{"reference":"Patient/p1"},'
    '"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},'
    '"effectiveDateTime":"2024-05-01T09:00:00Z",'
    '"valueQuantity":{"value":%s,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}'
)


@pytest.mark.parametrize(
    ("route", "body", "field", "problem"),
    [
        (
            "/v1/webhooks/garmin/dailies",
            GARMIN_DAILY % ('"s1"', HUGE),
            'dailies[0].timeOffsetHeartRateSamples["0"]',
            "out of range",
        ),
        (
            "/v1/webhooks/garmin/dailies",
            GARMIN_DAILY % ('"\\ud800"', "60"),
            "dailies[0].summaryId",
            "not valid Unicode",
        ),
        ("/v1/fhir/Observation", FHIR_HR % ('"o1"', HUGE), "valueQuantity.value", "out of range"),
        ("/v1/fhir/Observation", FHIR_HR % ('"\\udc00"', "60"), "id", "not valid Unicode"),
        (
            "/v1/webhooks/fitbit",
            '[{"collectionType":"\\ud800","date":"2024-05-01","ownerId":"A1",'
            '"ownerType":"user","subscriptionId":"s1"}]',
            "[0].collectionType",
            "not valid Unicode",
        ),
        (
            "/v1/webhooks/google-health",
            '[{"data":{"healthUserId":"u1","operation":"UPSERT","dataType":"\\ud800"}}]',
            "[0].data.dataType",
            "not valid Unicode",
        ),
    ],
    ids=[
        "garmin-huge-int",
        "garmin-lone-surrogate",
        "fhir-huge-int",
        "fhir-lone-surrogate",
        "fitbit-lone-surrogate",
        "google-lone-surrogate",
    ],
)
async def test_a_number_too_big_or_a_lone_surrogate_is_422_naming_the_field_not_500(
    client: httpx.AsyncClient, idp: FakeIdP, route: str, body: str, field: str, problem: str
) -> None:
    raw = body.encode()
    response = await client.post(route, content=raw, headers=route_headers(route, idp, raw))
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert field in message and problem in message
