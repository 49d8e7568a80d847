"""Bad input at POST /v1/readings gets a 4xx naming the problem, never a 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from deploy.embedded_broker import free_port
from services.ingest.adapters.consent import ConsentViewAdapter
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.consent_view import ConsentState
from tests.conftest import auth_settings, bearer
from tests.fakes.idp import FakeIdP


@pytest.fixture
async def client(idp: FakeIdP) -> AsyncIterator[httpx.AsyncClient]:
    # No broker listens there: anything valid must be refused with 503, never "accepted".
    settings = IngestSettings(
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        ingest_max_body_bytes=4096,
        **auth_settings(idp),
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    headers = bearer(idp, "readings:write")
    async with httpx.AsyncClient(
        transport=transport, base_url="http://ingest", headers=headers
    ) as c:
        yield c


def reading(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "patient_id": "pt-1",
        "metric": "heart_rate",
        "value": 80,
        "unit": "/min",
        "measured_at": datetime.now(UTC).isoformat(),
        "source": "api",
    }
    body.update(overrides)
    return body


async def post_json(client: httpx.AsyncClient, body: object) -> httpx.Response:
    return await client.post("/v1/readings", json=body)


@pytest.mark.parametrize(
    ("item", "field"),
    [
        (reading(metric="mood"), "readings[0].metric"),
        (reading(value="130"), "readings[0].value"),
        (reading(value=True), "readings[0].value"),
        (reading(unit="mg/dL"), "readings[0].unit"),
        (reading(value=0), "readings[0].value"),
        (reading(value=400), "readings[0].value"),
        (reading(metric="blood_glucose", unit="mg/dL", value=-3), "readings[0].value"),
        (reading(measured_at="2026-11-23T10:00:00"), "readings[0].measured_at"),
        (reading(measured_at="yesterday"), "readings[0].measured_at"),
        (reading(measured_at="SIX_MINUTES_AHEAD"), "readings[0].measured_at"),
        (reading(patient_id="Maria Silva"), "readings[0].patient_id"),
        (reading(patient_id=""), "readings[0].patient_id"),
        (reading(extra="x"), "readings[0].extra"),
        ({k: v for k, v in reading().items() if k != "unit"}, "readings[0].unit"),
    ],
)
async def test_invalid_reading_is_422_naming_the_field(
    client: httpx.AsyncClient, item: dict[str, object], field: str
) -> None:
    if item.get("measured_at") == "SIX_MINUTES_AHEAD":  # computed now, not at collection time
        item = {**item, "measured_at": (datetime.now(UTC) + timedelta(minutes=6)).isoformat()}
    response = await post_json(client, {"readings": [item]})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert field in [d["field"] for d in error["details"]]
    assert field in error["message"]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
async def test_nan_and_infinity_are_refused(client: httpx.AsyncClient, token: str) -> None:
    raw = json.dumps({"readings": [reading(value=1)]}).replace('"value": 1', f'"value": {token}')
    response = await client.post(
        "/v1/readings", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "readings[0].value"


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/readings", content=b'{"readings": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


async def test_wrong_content_type_is_415(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/readings", content=b"hr=130")
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]["message"]


async def test_body_over_the_cap_is_413(client: httpx.AsyncClient) -> None:
    response = await post_json(client, {"readings": [reading(source_id="x" * 100)] * 40})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


async def test_empty_and_oversized_batches_are_422(client: httpx.AsyncClient) -> None:
    assert (await post_json(client, {"readings": []})).status_code == 422
    assert (await post_json(client, {"rows": [reading()]})).status_code == 422
    assert (await post_json(client, [reading()])).status_code == 422


async def test_one_bad_sample_rejects_the_whole_batch_and_names_its_index(
    client: httpx.AsyncClient,
) -> None:
    response = await post_json(client, {"readings": [reading(), reading(value=999)]})
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["error"]["details"]] == ["readings[1].value"]


async def test_nothing_is_accepted_while_consent_state_is_loading(
    client: httpx.AsyncClient,
) -> None:
    # No broker: the consent view cannot load, so whether to process is unknown.
    response = await post_json(client, {"readings": [reading()]})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "consent_view_loading"


async def test_nothing_is_accepted_while_the_broker_is_unavailable(
    client: httpx.AsyncClient,
) -> None:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    loaded = ConsentState(consent_required=False)
    loaded.caught_up = True
    transport.app.state.consent = ConsentViewAdapter(loaded)  # type: ignore[attr-defined]
    response = await post_json(client, {"readings": [reading()]})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "broker_unavailable"


async def test_ops_endpoints(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["kafka_producer"] is False
    await post_json(client, {"readings": [reading(value=0)]})
    metrics = (await client.get("/metrics")).text
    assert (
        'http_request_seconds_count{method="POST",route="/v1/readings",status="422"} 1.0' in metrics
    )
    assert (await client.get("/docs")).status_code == 200
    assert (await client.get("/nope")).json()["error"]["code"] == "not_found"


async def test_posting_readings_needs_a_token_with_readings_write(
    client: httpx.AsyncClient, idp: FakeIdP
) -> None:
    body = {"readings": [reading()]}
    anonymous = await client.post("/v1/readings", json=body, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    wrong_scope = await client.post("/v1/readings", json=body, headers=bearer(idp, "consent:read"))
    assert wrong_scope.status_code == 403


async def test_the_token_is_checked_before_the_body_is_parsed(client: httpx.AsyncClient) -> None:
    # An anonymous caller learns nothing about how its body would have been read.
    response = await client.post(
        "/v1/readings",
        content=b'{"readings": [',
        headers={"content-type": "application/json", "Authorization": ""},
    )
    assert response.status_code == 401


@pytest.mark.parametrize("raw", [b"", b"\xff\xfe\x00", b"[" * 2000 + b"]" * 2000])
async def test_empty_undecodable_or_absurdly_nested_bodies_are_4xx(
    client: httpx.AsyncClient, raw: bytes
) -> None:
    response = await client.post(
        "/v1/readings", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] in ("malformed_json", "validation_error")


async def test_the_openapi_document_describes_the_readings_body(
    client: httpx.AsyncClient,
) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/v1/readings"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    fields = body["properties"]["readings"]["items"]["properties"]
    assert {"patient_id", "metric", "value", "unit", "measured_at", "source"} <= fields.keys()
    assert "heart_rate" in fields["metric"]["enum"]
