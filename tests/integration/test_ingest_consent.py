"""Consent end to end: a vendor's readings reach readings.v1 only for a patient with active
monitoring consent; the others are withheld, counted in the 2xx body and audited."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.consent.app import create_app as create_consent
from services.consent.settings import ConsentSettings
from tests.conftest import FAST_GROUPS, auth_settings, bearer, serving, wait_ready
from tests.fakes.idp import FakeIdP
from tests.integration.ingest_harness import (
    START,
    Ingest,
    apple_hr_body,
    dropped_readings,
    eventually,
    garmin_dailies,
    garmin_push,
    ingest_service,
    readings,
)

pytestmark = pytest.mark.integration


async def test_readings_of_a_patient_without_monitoring_consent_are_withheld(
    broker: str, idp: FakeIdP, tmp_path: Path
) -> None:
    async with ingest_service(broker, idp, tmp_path, consent_required=True) as ingest:
        await ingest.connect({"vendor": "garmin", "vendor_user_id": "g-1", "patient_id": "pt-nc"})
        apple = await ingest.connect({"vendor": "apple_health", "patient_id": "pt-nc-apple"})
        body = garmin_dailies("g-1", "s-nc", start=START, heart_rate={"0": 70, "15": 72})
        pushed = await garmin_push(ingest, body)
        assert pushed.status_code == 200, pushed.text
        assert pushed.json()["withheld_no_consent"] == 2
        assert pushed.json()["accepted"] == 0
        apple_body = apple_hr_body(bpm=64, at="2024-05-01 09:00:00 -0300")
        posted = await ingest.post(
            "/v1/webhooks/apple-health",
            content=apple_body,
            headers={"Authorization": f"Bearer {apple['device_key']}"},
        )
        assert posted.status_code == 202, posted.text
        assert posted.json()["withheld_no_consent"] == 1
        assert posted.json()["accepted"] == 0
        assert await readings(ingest) == []
        dropped = await dropped_readings(ingest, count=2)
        assert {(r.patient_id, r.reason) for r in dropped} == {
            ("pt-nc", "no_active_consent"),
            ("pt-nc-apple", "no_active_consent"),
        }


@contextlib.asynccontextmanager
async def consent_service(
    bootstrap: str, idp: FakeIdP, tmp_path: Path, ingest_url: str
) -> AsyncIterator[str]:
    """The consent service (its grants reach ingest over consent.v1)."""
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "database_url": f"sqlite:///{tmp_path}/consent.db",
        "audit_signing_key": base64.b64encode(b"\x01" * 32).decode(),
        "export_sources": f"ingest={ingest_url}",
        "erasure_services": "ingest,consent",
        **auth_settings(idp),
        **FAST_GROUPS,
    }
    settings = ConsentSettings(**values)
    async with serving(create_consent(settings)) as url:
        await wait_ready(url)
        yield url


async def grant_monitoring(consent_url: str, idp: FakeIdP, patient: str) -> None:
    """Record the patient's monitoring consent through the consent service."""
    async with httpx.AsyncClient(headers=bearer(idp, "consent:write")) as client:
        response = await client.post(
            f"{consent_url}/v1/patients/{patient}/consents",
            json={
                "purpose": "monitoring",
                "notice_version": "v1",
                "performer": {"type": "patient", "reference": "u-1"},
                "evidence": {"type": "app-checkbox", "reference": "r-1"},
            },
        )
    assert response.status_code == 201, response.text


async def test_a_consent_granted_in_the_consent_service_lets_that_patients_readings_through(
    broker: str, idp: FakeIdP, tmp_path: Path
) -> None:
    async with (
        ingest_service(broker, idp, tmp_path, consent_required=True) as ingest,
        consent_service(broker, idp, tmp_path, ingest.url) as consent,
    ):
        for user, patient in (("g-yes", "pt-yes"), ("g-no", "pt-no")):
            await ingest.connect(
                {"vendor": "garmin", "vendor_user_id": user, "patient_id": patient}
            )
        await grant_monitoring(consent, idp, "pt-yes")
        consented = garmin_dailies("g-yes", "s-yes", start=START, heart_rate={"0": 70})
        # The grant reaches ingest over consent.v1: re-push (same reading id) until it has.
        accepted = await eventually(lambda: _accepted(ingest, consented))
        assert accepted["withheld_no_consent"] == 0
        refused = await garmin_push(
            ingest, garmin_dailies("g-no", "s-no", start=START, heart_rate={"0": 71})
        )
        assert refused.json()["withheld_no_consent"] == 1
        published = await readings(ingest, count=1)
        assert {r.patient_id for r in published} == {"pt-yes"}
        assert len({r.reading_id for r in published}) == 1


async def _accepted(ingest: Ingest, body: bytes) -> dict[str, Any] | None:
    response = await garmin_push(ingest, body)
    assert response.status_code == 200, response.text
    outcome: dict[str, Any] = response.json()
    return outcome if outcome["accepted"] == 1 else None
