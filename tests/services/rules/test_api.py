"""Per-patient thresholds over real HTTP, on SQLite and PostgreSQL: validated, tenant-scoped,
audited, and applied by every rules instance within a second."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.rules.app import create_app
from services.rules.settings import RulesSettings
from shared.events import ConsentChanged, Purpose
from shared.topics import CONSENT
from tests.conftest import FAST_GROUPS, auth_settings, bearer, serving, wait_ready
from tests.fakes.idp import FakeIdP

pytestmark = pytest.mark.integration
BANDS = {"heart_rate": {"red": {"above": 160, "below": 35}, "yellow": {"above": 140, "below": 40}}}


@contextlib.asynccontextmanager
async def rules_service(
    broker: str, idp: FakeIdP, database: dict[str, Any], *, group: str = "rules"
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    db = {"rules_database_url": database["database_url"]}
    if "database_schema" in database:
        db["rules_database_schema"] = database["database_schema"]
    settings = RulesSettings(
        kafka_bootstrap_servers=broker,
        rules_group_id=group,
        **db,
        **FAST_GROUPS,
        **auth_settings(idp),
    )
    app = create_app(settings)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        await wait_ready(url)
        yield client, app


async def give_consent(broker: str, patient: str, tenant: str = "tenant-a") -> None:
    """What the consent service publishes on a grant (the rules service only reads it)."""
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        event = ConsentChanged(
            event_id=f"c-{patient}",
            patient_id=patient,
            tenant_id=tenant,
            consent_id="c-1",
            purpose=Purpose.MONITORING,
            change="granted",
            purpose_active=True,
            changed_at="2026-11-23T12:00:00Z",
        )
        await producer.send_and_wait(CONSENT.name, CONSENT.encode(event), key=patient.encode())
    finally:
        await producer.stop()


async def eventually(check: Any, timeout: float) -> Any:
    async with asyncio.timeout(timeout):
        while not (result := check()):
            await asyncio.sleep(0.01)
    return result


async def test_set_read_remove_thresholds(
    broker: str, idp: FakeIdP, database: dict[str, Any]
) -> None:
    await give_consent(broker, "pt-th-1")
    async with rules_service(broker, idp, database) as (client, app):
        rw = bearer(idp, "thresholds:write thresholds:read")
        await eventually(lambda: app.state.engine.consent.tenant_of("pt-th-1"), 5)
        put = await client.put("/v1/patients/pt-th-1/thresholds", json={"bands": BANDS}, headers=rw)
        assert put.status_code == 200, put.text
        assert put.json()["version"] == 1 and put.json()["updated_by"] == "user-1"
        assert "pt-th-1" in app.state.engine.thresholds  # applied here at once
        got = await client.get("/v1/patients/pt-th-1/thresholds", headers=rw)
        assert got.json()["bands"] == BANDS
        again = await client.put(
            "/v1/patients/pt-th-1/thresholds", json={"bands": BANDS}, headers=rw
        )
        assert again.json()["version"] == 2
        assert (
            await client.delete("/v1/patients/pt-th-1/thresholds", headers=rw)
        ).status_code == 204
        assert (await client.get("/v1/patients/pt-th-1/thresholds", headers=rw)).status_code == 404
        assert "pt-th-1" not in app.state.engine.thresholds


@pytest.mark.parametrize(
    ("bands", "field"),
    [
        ({"heart_rate": {"red": {"above": 130}, "yellow": {"above": 140}}}, "heart_rate"),
        ({"heart_rate": {"red": {"above": "fast"}}}, "heart_rate.red.above"),
        ({"mood": {"red": {"above": 1}}}, "mood"),
    ],
)
async def test_bad_thresholds_are_422_naming_the_field(
    broker: str, idp: FakeIdP, tmp_path: Any, bands: dict[str, Any], field: str
) -> None:
    await give_consent(broker, "pt-th-2")
    async with rules_service(broker, idp, {"database_url": f"sqlite:///{tmp_path}/r.db"}) as (
        client,
        app,
    ):
        await eventually(lambda: app.state.engine.consent.tenant_of("pt-th-2"), 5)
        response = await client.put(
            "/v1/patients/pt-th-2/thresholds",
            json={"bands": bands},
            headers=bearer(idp, "thresholds:write"),
        )
        assert response.status_code == 422, response.text
        assert field in response.json()["error"]["message"]


async def test_other_tenants_and_unknown_patients_get_404_and_scopes_are_enforced(
    broker: str, idp: FakeIdP, tmp_path: Any
) -> None:
    await give_consent(broker, "pt-th-3")
    async with rules_service(broker, idp, {"database_url": f"sqlite:///{tmp_path}/r.db"}) as (
        client,
        app,
    ):
        await eventually(lambda: app.state.engine.consent.tenant_of("pt-th-3"), 5)
        other = bearer(idp, "thresholds:write thresholds:read", tenant="tenant-b")
        url = "/v1/patients/pt-th-3/thresholds"
        assert (await client.put(url, json={"bands": BANDS}, headers=other)).status_code == 404
        assert (
            await client.get("/v1/patients/nobody/thresholds", headers=other)
        ).status_code == 404
        read_only = bearer(idp, "thresholds:read")
        assert (await client.put(url, json={"bands": BANDS}, headers=read_only)).status_code == 403


async def test_a_second_instance_applies_a_change_within_a_second(
    broker: str, idp: FakeIdP, tmp_path: Any
) -> None:
    await give_consent(broker, "pt-th-4")
    shared_db = {"database_url": f"sqlite:///{tmp_path}/r.db"}
    async with (
        rules_service(broker, idp, shared_db) as (one, a),
        rules_service(broker, idp, shared_db) as (_, b),
    ):
        await eventually(lambda: a.state.engine.consent.tenant_of("pt-th-4"), 5)
        response = await one.put(
            "/v1/patients/pt-th-4/thresholds",
            json={"bands": BANDS},
            headers=bearer(idp, "thresholds:write"),
        )
        assert response.status_code == 200
        started = asyncio.get_running_loop().time()
        await eventually(lambda: "pt-th-4" in b.state.engine.thresholds, 1.0)
        assert asyncio.get_running_loop().time() - started < 1.0
