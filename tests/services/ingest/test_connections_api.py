"""The connections admin API: link vendor accounts to patients; tokens encrypted, device keys hashed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.db import make_engine
from tests.conftest import FAST_GROUPS, auth_settings, bearer, serving, wait_ready
from tests.fakes.idp import FakeIdP

KEY = Fernet.generate_key().decode()


def ingest_db(database: dict[str, Any]) -> dict[str, Any]:
    return {
        "ingest_database_url": database["database_url"].replace("consent.db", "ingest.db"),
        "ingest_database_schema": database.get("database_schema"),
    }


@pytest.fixture
async def ingest(
    broker: str, idp: FakeIdP, database: dict[str, Any]
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    settings = IngestSettings(
        kafka_bootstrap_servers=broker,
        ingest_token_keys=KEY,
        **ingest_db(database),
        **auth_settings(idp),
        **FAST_GROUPS,
    )
    async with serving(create_app(settings)) as url:
        await wait_ready(url)
        yield url, ingest_db(database)


def fitbit_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "vendor": "fitbit",
        "vendor_user_id": "228S74",
        "patient_id": "pt-conn-1",
        "tokens": {
            "access_token": "fitbit-access-token-SECRET",
            "refresh_token": "fitbit-refresh-token-SECRET",
            "expires_at": (datetime.now(UTC) + timedelta(hours=8)).isoformat(),
        },
        "utc_offset_minutes": -180,
    }
    body.update(overrides)
    return body


async def test_fitbit_connection_round_trip_with_tokens_encrypted_at_rest(
    ingest: tuple[str, dict[str, Any]], idp: FakeIdP
) -> None:
    url, db = ingest
    admin = bearer(idp, "admin")
    async with httpx.AsyncClient(base_url=url, headers=admin) as client:
        created = await client.post("/v1/connections", json=fitbit_body())
        assert created.status_code == 201, created.text
        conn = created.json()
        assert conn["has_tokens"] is True and conn["status"] == "active"
        assert "SECRET" not in created.text
        again = await client.post("/v1/connections", json=fitbit_body(patient_id="pt-other"))
        assert again.status_code == 409
        listed = (await client.get("/v1/connections", params={"patient_id": "pt-conn-1"})).json()
        assert [c["connection_id"] for c in listed["connections"]] == [conn["connection_id"]]
        other_tenant = bearer(idp, "admin", tenant="tenant-b")
        hidden = await client.get(f"/v1/connections/{conn['connection_id']}", headers=other_tenant)
        assert hidden.status_code == 404
    engine = make_engine(db["ingest_database_url"], schema=db["ingest_database_schema"])
    async with engine.connect() as c:
        stored = (await c.execute(text("SELECT tokens_encrypted FROM ingest_connections"))).scalar()
    await engine.dispose()
    assert stored and "SECRET" not in stored
    assert "fitbit-access-token-SECRET" in Fernet(KEY.encode()).decrypt(stored.encode()).decode()
    async with httpx.AsyncClient(base_url=url, headers=admin) as client:
        gone = await client.delete(f"/v1/connections/{conn['connection_id']}")
        assert gone.status_code == 204
        assert (await client.get(f"/v1/connections/{conn['connection_id']}")).status_code == 404


async def test_apple_connection_issues_a_device_key_once_and_stores_only_its_hash(
    ingest: tuple[str, dict[str, Any]], idp: FakeIdP
) -> None:
    url, db = ingest
    async with httpx.AsyncClient(base_url=url, headers=bearer(idp, "admin")) as client:
        created = await client.post(
            "/v1/connections", json={"vendor": "apple_health", "patient_id": "pt-apple"}
        )
        assert created.status_code == 201, created.text
        key = created.json()["device_key"]
        assert key.startswith("hak_")
        shown = await client.get(f"/v1/connections/{created.json()['connection_id']}")
        assert "device_key" not in shown.json()
    engine = make_engine(db["ingest_database_url"], schema=db["ingest_database_schema"])
    async with engine.connect() as c:
        row = (await c.execute(text("SELECT * FROM ingest_connections"))).mappings().one()
    await engine.dispose()
    # The secret is urlsafe base64 and may itself hold "_": take all 43 characters after the id.
    secret = key[len("hak_") + 16 + 1 :]
    assert len(secret) == 43 and secret not in str(dict(row))


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"vendor": "fitbit", "patient_id": "p1"}, "vendor_user_id is required"),
        ({"vendor": "fitbit", "vendor_user_id": "u1", "patient_id": "p1"}, "tokens are required"),
        (
            {k: v for k, v in fitbit_body().items() if k != "utc_offset_minutes"},
            "utc_offset_minutes is required for fitbit",
        ),
        ({"vendor": "apple_health", "vendor_user_id": "u1", "patient_id": "p1"}, "device key"),
        ({"vendor": "polar", "vendor_user_id": "u1", "patient_id": "p1"}, "vendor"),
        ({"vendor": "garmin", "vendor_user_id": "u1", "patient_id": "bad id"}, "patient_id"),
    ],
)
async def test_bad_connection_bodies_are_refused_naming_the_problem(
    ingest: tuple[str, dict[str, Any]], idp: FakeIdP, body: dict[str, Any], needle: str
) -> None:
    url, _ = ingest
    async with httpx.AsyncClient(base_url=url, headers=bearer(idp, "admin")) as client:
        response = await client.post("/v1/connections", json=body)
    assert response.status_code == 422
    assert needle in response.text


async def test_connections_need_the_admin_scope(
    ingest: tuple[str, dict[str, Any]], idp: FakeIdP
) -> None:
    url, _ = ingest
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/v1/connections")).status_code == 401
        denied = await client.get("/v1/connections", headers=bearer(idp, "readings:write"))
        assert denied.status_code == 403
