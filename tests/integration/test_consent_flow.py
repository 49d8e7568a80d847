"""Consent across the whole system: revocation stops processing everywhere; export and erasure."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from services.consent.app import create_app as create_consent
from services.consent.settings import ConsentSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.notifier.app import create_app as create_notifier
from services.notifier.settings import NotifierSettings
from services.rules.app import create_app as create_rules
from services.rules.settings import RulesSettings
from shared.events import AlertEvent
from shared.topics import ALERTS
from tests.conftest import FAST_GROUPS, auth_settings, bearer, serving, wait_ready
from tests.fakes.idp import FakeIdP
from tests.fakes.slack import FakeSlack

pytestmark = pytest.mark.integration
OFFICER = "consent:read consent:write consent:revoke audit:read patient:export patient:erase"


@dataclass
class System:
    ingest: str
    rules: str
    consent: str
    idp: FakeIdP

    def headers(self, scopes: str = OFFICER, tenant: str = "tenant-a") -> dict[str, str]:
        return bearer(self.idp, scopes, tenant=tenant)


@contextlib.asynccontextmanager
async def system(
    broker: str, idp: FakeIdP, slack: FakeSlack, tmp_path: Path
) -> AsyncIterator[System]:
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": broker,
        **FAST_GROUPS,
        **auth_settings(idp),
    }
    ingest = create_ingest(
        IngestSettings(**common, ingest_database_url=f"sqlite:///{tmp_path}/ingest.db")
    )
    rules = create_rules(
        RulesSettings(**common, rules_database_url=f"sqlite:///{tmp_path}/rules.db")
    )
    notifier = create_notifier(
        NotifierSettings(
            **common,
            slack_api_base_url=slack.base_url,
            slack_bot_token=slack.token,
            notifier_database_url=f"sqlite:///{tmp_path}/notifier.db",
        )
    )
    async with serving(ingest) as i, serving(rules) as r, serving(notifier) as n:
        consent = create_consent(
            ConsentSettings(
                **common,
                database_url=f"sqlite:///{tmp_path}/consent.db",
                audit_signing_key=base64.b64encode(b"\x01" * 32).decode(),
                export_sources=f"ingest={i},rules={r},notifier={n}",
            )
        )
        async with serving(consent) as c:
            await wait_ready(i, r, n, c)
            yield System(ingest=i, rules=r, consent=c, idp=idp)


async def eventually(check: Callable[[], Any], timeout: float) -> Any:
    """Re-run an async check until it returns something truthy (an observable condition)."""
    async with asyncio.timeout(timeout):
        while not (result := await check()):
            await asyncio.sleep(0.01)
    return result


async def post_hr(
    s: System, patient: str, value: float, at: datetime, tenant: str = "tenant-a"
) -> dict[str, Any]:
    """Post a sustained episode: three readings over the 60 s the heart-rate rule needs."""
    readings = [
        {
            "patient_id": patient,
            "metric": "heart_rate",
            "value": value,
            "unit": "/min",
            "measured_at": (at - timedelta(seconds=back)).isoformat(),
            "source": "test",
        }
        for back in (60, 30, 0)
    ]
    async with httpx.AsyncClient(headers=s.headers("readings:write", tenant)) as client:
        response = await client.post(f"{s.ingest}/v1/readings", json={"readings": readings})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def grant(s: System, patient: str) -> str:
    async with httpx.AsyncClient(headers=s.headers()) as client:
        response = await client.post(
            f"{s.consent}/v1/patients/{patient}/consents",
            json={
                "purpose": "monitoring",
                "notice_version": "v1",
                "performer": {"type": "patient", "reference": "u-1"},
                "evidence": {"type": "app-checkbox", "reference": "r-1"},
            },
        )
    assert response.status_code == 201, response.text
    consent_id: str = response.json()["id"]
    return consent_id


async def consent_revoked_resolve(bootstrap: str, alert_id: str) -> AlertEvent:
    consumer = AIOKafkaConsumer(
        ALERTS.name, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        async with asyncio.timeout(5):
            while True:
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    for record in records:
                        event = ALERTS.decode(record.value)
                        if event.alert_id == alert_id and event.reason == "consent_revoked":
                            return event
    finally:
        await consumer.stop()


async def test_revocation_stops_processing_everywhere(
    broker: str, idp: FakeIdP, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    async with system(broker, idp, fake_slack, tmp_path) as s:
        assert (await post_hr(s, "pt-flow-1", 150, t0))["withheld_no_consent"] == 3
        consent_id = await grant(s, "pt-flow-1")
        await eventually(lambda: _accepted(s, "pt-flow-1", t0 + timedelta(seconds=1)), timeout=5)
        assert await asyncio.to_thread(
            fake_slack.wait_for, lambda c: len(fake_slack.calls_mentioning("pt-flow-1")) == 1, 5
        )
        async with httpx.AsyncClient(headers=s.headers()) as client:
            revoked = await client.post(
                f"{s.consent}/v1/patients/pt-flow-1/consents/{consent_id}/revoke",
                json={"reason": "patient withdrew in the app"},
            )
            assert revoked.status_code == 200
            revoked_at = asyncio.get_running_loop().time()
            # Within a second ingest withholds the patient's next reading...
            await eventually(lambda: _withheld(s, "pt-flow-1", t0 + timedelta(seconds=2)), 1.0)
            assert asyncio.get_running_loop().time() - revoked_at < 1.0
            # ...and rules resolved the open episode as "consent_revoked".
            opened = fake_slack.calls_mentioning("pt-flow-1")[0].body
            alert = next(b for b in opened["blocks"] if b["type"] == "section")
            alert_id = next(f["text"] for f in alert["fields"] if f["text"].startswith("*Alert*"))
            resolve = await consent_revoked_resolve(broker, alert_id.split("`")[1])
            assert resolve.kind == "resolved" and resolve.readings == ()
            # Nothing more reached Slack, and the trail holds grant, revoke and the dropped reading.
            assert len(fake_slack.calls_mentioning("pt-flow-1")) == 1
            actions = await eventually(lambda: _actions(client, s, "pt-flow-1"), timeout=5)
        assert {"consent.grant", "consent.revoke", "reading.dropped"} <= actions


async def _accepted(s: System, patient: str, at: datetime) -> bool:
    return (await post_hr(s, patient, 150, at))["withheld_no_consent"] == 0


async def _withheld(s: System, patient: str, at: datetime) -> bool:
    return (await post_hr(s, patient, 160, at))["withheld_no_consent"] == 3


async def _actions(client: httpx.AsyncClient, s: System, patient: str) -> set[str] | None:
    response = await client.get(f"{s.consent}/v1/audit", params={"patient_id": patient})
    actions = {e["record"]["action"] for e in response.json()["entries"]}
    return actions if "reading.dropped" in actions and len(actions) >= 3 else None


async def test_export_and_erasure_reach_every_service(
    broker: str, idp: FakeIdP, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    at = datetime.now(UTC) - timedelta(minutes=1)
    async with system(broker, idp, fake_slack, tmp_path) as s:
        await grant(s, "pt-flow-2")
        await eventually(lambda: _accepted_normal(s, "pt-flow-2", at), timeout=5)
        # Another tenant cannot feed readings into this patient's stream.
        foreign = await post_hr(s, "pt-flow-2", 80, at + timedelta(seconds=1), tenant="tenant-b")
        assert foreign["withheld_no_consent"] == 3
        async with httpx.AsyncClient(headers=s.headers()) as client:
            export = await eventually(lambda: _export_with_state(client, s, "pt-flow-2"), 5)
            assert [c["purpose"] for c in export["consent"]["consents"]] == ["monitoring"]
            assert export["ingest"] == {"connections": []}
            assert export["notifier"] == {"contact": None, "alerts": []}
            other = await client.get(
                f"{s.consent}/v1/patients/pt-flow-2/export", headers=s.headers(tenant="tenant-b")
            )
            assert other.status_code == 404
            requested = await client.post(f"{s.consent}/v1/patients/pt-flow-2/erasure")
            assert requested.status_code == 202
            status_url = s.consent + requested.json()["status_url"]
            status = await eventually(lambda: _complete(client, status_url), timeout=10)
            assert set(status["services"]) == {"ingest", "rules", "notifier", "consent"}
            assert status["services"]["rules"]["detail"] == "deleted 1 rule state(s)"
            after = (await client.get(f"{s.consent}/v1/patients/pt-flow-2/export")).json()
        assert after["rules"] == {"rule_state": {}, "thresholds": None}


async def _accepted_normal(s: System, patient: str, at: datetime) -> bool:
    return (await post_hr(s, patient, 80, at))["withheld_no_consent"] == 0


async def _export_with_state(
    client: httpx.AsyncClient, s: System, patient: str
) -> dict[str, Any] | None:
    body: dict[str, Any] = (await client.get(f"{s.consent}/v1/patients/{patient}/export")).json()
    return body if body["rules"].get("rule_state") else None


async def _complete(client: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
    body: dict[str, Any] = (await client.get(url)).json()
    return body if body["complete"] else None
