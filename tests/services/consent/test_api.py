"""Consent API over real HTTP against SQLite and PostgreSQL: grant, revoke, tenants, audit, attacks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from services.consent.app import create_app
from services.consent.settings import ConsentSettings
from tests.conftest import auth_settings, bearer, serving
from tests.fakes.idp import FakeIdP

pytestmark = pytest.mark.integration
SEED = base64.b64encode(b"\x07" * 32).decode()
ALL = "consent:read consent:write consent:revoke audit:read patient:export patient:erase"


@contextlib.asynccontextmanager
async def consent_service(
    broker: str, idp: FakeIdP, database: dict[str, Any]
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    settings = ConsentSettings(
        kafka_bootstrap_servers=broker,
        audit_signing_key=SEED,
        export_sources="",
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=300,
        **auth_settings(idp),
        **database,
    )
    app = create_app(settings)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        yield client, app


def grant_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "purpose": "monitoring",
        "notice_version": "2026-10",
        "performer": {"type": "patient", "reference": "app-user-77"},
        "evidence": {"type": "app-checkbox", "reference": "receipt-123"},
    }
    body.update(overrides)
    return body


async def grant(client: httpx.AsyncClient, idp: FakeIdP, patient: str, **kw: Any) -> httpx.Response:
    return await client.post(
        f"/v1/patients/{patient}/consents", json=grant_body(), headers=bearer(idp, ALL, **kw)
    )


async def test_grant_list_status_revoke(
    broker: str, idp: FakeIdP, database: dict[str, Any]
) -> None:
    async with consent_service(broker, idp, database) as (client, _):
        granted = await grant(client, idp, "pt-1")
        assert granted.status_code == 201, granted.text
        consent = granted.json()
        assert consent["status"] == "active" and consent["granted_by"] == "user-1"
        status = await client.get(
            "/v1/patients/pt-1/consent-status",
            params={"purpose": "monitoring"},
            headers=bearer(idp, ALL),
        )
        assert status.json()["allowed"] is True
        revoke_url = f"/v1/patients/pt-1/consents/{consent['id']}/revoke"
        revoked = await client.post(
            revoke_url, json={"reason": "patient asked by phone"}, headers=bearer(idp, ALL)
        )
        assert revoked.status_code == 200 and revoked.json()["status"] == "inactive"
        again = await client.post(
            revoke_url, json={"reason": "duplicate click"}, headers=bearer(idp, ALL)
        )
        assert again.status_code == 200
        assert again.json()["revocation_reason"] == "patient asked by phone"  # idempotent
        status = await client.get(
            "/v1/patients/pt-1/consent-status",
            params={"purpose": "monitoring"},
            headers=bearer(idp, ALL),
        )
        assert status.json()["allowed"] is False
        listed = await client.get("/v1/patients/pt-1/consents", headers=bearer(idp, ALL))
        assert [c["status"] for c in listed.json()] == ["inactive"]


async def test_a_revoked_consent_is_never_reactivated(
    broker: str, idp: FakeIdP, database: dict[str, Any]
) -> None:
    async with consent_service(broker, idp, database) as (client, _):
        consent = (await grant(client, idp, "pt-2")).json()
        url = f"/v1/patients/pt-2/consents/{consent['id']}"
        await client.post(f"{url}/revoke", json={"reason": "withdrawn"}, headers=bearer(idp, ALL))
        for method in ("PATCH", "PUT"):
            response = await client.request(
                method, url, json={"status": "active"}, headers=bearer(idp, ALL)
            )
            assert response.status_code in (404, 405)
        regrant = await grant(client, idp, "pt-2")
        assert regrant.json()["id"] != consent["id"]  # a new grant is a new record
        listed = (await client.get("/v1/patients/pt-2/consents", headers=bearer(idp, ALL))).json()
        assert sorted(c["status"] for c in listed) == ["active", "inactive"]


async def test_another_tenant_cannot_see_or_change_a_patient(
    broker: str, idp: FakeIdP, database: dict[str, Any]
) -> None:
    async with consent_service(broker, idp, database) as (client, _):
        consent = (await grant(client, idp, "pt-3")).json()
        other = bearer(idp, ALL, tenant="tenant-b")
        revoke = await client.post(
            f"/v1/patients/pt-3/consents/{consent['id']}/revoke",
            json={"reason": "x" * 5},
            headers=other,
        )
        unknown = await client.post(
            "/v1/patients/pt-3/consents/00000000-0000-0000-0000-000000000000/revoke",
            json={"reason": "x" * 5},
            headers=bearer(idp, ALL),
        )
        assert revoke.status_code == unknown.status_code == 404
        assert revoke.json() == unknown.json() | {"error": revoke.json()["error"]}
        assert (await client.get("/v1/patients/pt-3/consents", headers=other)).status_code == 404
        assert (await grant(client, idp, "pt-3", tenant="tenant-b")).status_code == 404
        mine = await client.get("/v1/patients/pt-3/consents", headers=bearer(idp, ALL))
        assert [c["status"] for c in mine.json()] == ["active"]
        audit_b = await client.get("/v1/audit", params={"patient_id": "pt-3"}, headers=other)
        assert audit_b.status_code == 200, audit_b.text
        denied = [e["record"] for e in audit_b.json()["entries"]]
        # Tenant B sees only its own (refused) attempts, never tenant A's grant.
        assert {r["action"] for r in denied} == {"authz.denied", "audit.read"}
        assert all(r["tenant_id"] == "tenant-b" for r in denied)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (grant_body(status="active"), 422),
        (grant_body(tenant_id="tenant-b"), 422),
        (grant_body(revoked_by="someone"), 422),
        (grant_body(purpose="marketing"), 422),
        (grant_body(period={"start": "2026-12-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}), 422),
        (grant_body(notice_version="v\u200b1"), 422),
    ],
)
async def test_bad_grants_are_4xx(
    broker: str, idp: FakeIdP, body: dict[str, Any], status: int
) -> None:
    async with consent_service(broker, idp, {"database_url": "sqlite:///:memory:"}) as (c, _):
        response = await c.post("/v1/patients/pt-4/consents", json=body, headers=bearer(idp, ALL))
        assert response.status_code == status, response.text
        # The refusal is on the trail (no tenant could be attributed: admins see it).
        audit = await c.get("/v1/audit", headers=bearer(idp, "audit:read admin"))
        refused = [
            e["record"]
            for e in audit.json()["entries"]
            if e["record"]["action"] == "request.refused"
        ]
        assert [r["reason"] for r in refused] == [f"http_{status}"]
        assert refused[0]["details"]["route"] == "/v1/patients/{patient_id}/consents"


@pytest.mark.parametrize(
    "patient",
    [
        "\uff50\uff41\uff43\uff11\uff12\uff13",
        "pac\u200b123",
        "pac\u202e321",
        "pac123%0A",
        "\u043fac123",
    ],
)
async def test_non_ascii_patient_ids_are_refused(broker: str, idp: FakeIdP, patient: str) -> None:
    async with consent_service(broker, idp, {"database_url": "sqlite:///:memory:"}) as (c, _):
        response = await c.post(
            f"/v1/patients/{patient}/consents", json=grant_body(), headers=bearer(idp, ALL)
        )
        assert response.status_code == 422


async def test_duplicate_json_keys_and_wrong_scope(broker: str, idp: FakeIdP) -> None:
    async with consent_service(broker, idp, {"database_url": "sqlite:///:memory:"}) as (c, _):
        raw = b'{"reason": "ok reason", "reason": "other"}'
        dup = await c.post(
            "/v1/patients/pt-5/consents/00000000-0000-0000-0000-000000000000/revoke",
            content=raw,
            headers={**bearer(idp, ALL), "content-type": "application/json"},
        )
        assert dup.status_code == 400 and dup.json()["error"]["code"] == "duplicate_json_key"
        read_only = await c.post(
            "/v1/patients/pt-5/consents", json=grant_body(), headers=bearer(idp, "consent:read")
        )
        assert read_only.status_code == 403
        assert "insufficient_scope" in read_only.headers["www-authenticate"]
        nobody = await c.post("/v1/patients/pt-5/consents", json=grant_body())
        assert nobody.status_code == 401


async def test_audit_trail_verifies_and_detects_tampering(
    broker: str, idp: FakeIdP, database: dict[str, Any]
) -> None:
    async with consent_service(broker, idp, database) as (client, app):
        consent = (await grant(client, idp, "pt-6")).json()
        await client.post(
            f"/v1/patients/pt-6/consents/{consent['id']}/revoke",
            json={"reason": "withdrawn"},
            headers=bearer(idp, ALL),
        )
        await app.state.audit_log.checkpoint(consent_time(consent))
        verify = await client.get("/v1/audit/verify", headers=bearer(idp, "audit:read"))
        assert verify.json()["ok"] is True and verify.json()["last_seq"] >= 2
        entries = (
            await client.get(
                "/v1/audit", params={"patient_id": "pt-6"}, headers=bearer(idp, "audit:read")
            )
        ).json()["entries"]
        actions = [e["record"]["action"] for e in entries]
        assert actions[:2] == ["consent.grant", "consent.revoke"]
        assert entries[1]["record"]["reason"] == "withdrawn"
        async with app.state.store.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE audit_entries SET entry = replace(entry, 'withdrawn', 'not asked') "
                    "WHERE action = 'consent.revoke'"
                )
            )
        altered = (await client.get("/v1/audit/verify", headers=bearer(idp, "audit:read"))).json()
        assert altered["ok"] is False
        assert "altered" in {p["kind"] for p in altered["problems"]}
        async with app.state.store.engine.begin() as conn:
            await conn.execute(text("DELETE FROM audit_entries WHERE seq > 1"))
        cut = (await client.get("/v1/audit/verify", headers=bearer(idp, "audit:read"))).json()
        assert "truncated" in {p["kind"] for p in cut["problems"]}


def consent_time(consent: dict[str, Any]) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(consent["granted_at"])


async def test_concurrent_revokes_make_exactly_one_transition(
    broker: str, idp: FakeIdP, database: dict[str, Any]
) -> None:
    async with consent_service(broker, idp, database) as (client, app):
        consent = (await grant(client, idp, "pt-7")).json()
        url = f"/v1/patients/pt-7/consents/{consent['id']}/revoke"
        results = await asyncio.gather(
            *(
                client.post(url, json={"reason": f"click {i}"}, headers=bearer(idp, ALL))
                for i in range(5)
            )
        )
        assert {r.status_code for r in results} == {200}
        assert len({r.json()["revocation_reason"] for r in results}) == 1
        async with app.state.store.engine.connect() as conn:
            events = (await conn.execute(text("SELECT payload FROM outbox"))).scalars().all()
            revokes = (
                await conn.execute(
                    text("SELECT count(*) FROM audit_entries WHERE action = 'consent.revoke'")
                )
            ).scalar_one()
        changes = [json.loads(e)["change"] for e in events]
        assert changes == ["granted", "revoked"]
        assert revokes == 5  # every attempt is audited, one of them changed the state


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b'{"reason": "' + b"x" * 70_000 + b'"}', 413),
        (b'{"reason": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 413),
        (b'{"reason": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", 400),
        (b'{"reason": NaN}', 422),
        (b'{"reason": "ok reason"', 400),
    ],
)
async def test_hostile_bodies_are_4xx_never_500(
    broker: str, idp: FakeIdP, raw: bytes, status: int
) -> None:
    async with consent_service(broker, idp, {"database_url": "sqlite:///:memory:"}) as (c, _):
        response = await c.post(
            "/v1/patients/pt-8/consents/00000000-0000-0000-0000-000000000000/revoke",
            content=raw,
            headers={**bearer(idp, ALL), "content-type": "application/json"},
        )
        assert response.status_code == status, response.text[:200]
