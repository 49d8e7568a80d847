"""The broker down: every webhook answers 503 with Retry-After (the vendor retries), never 2xx
for something the broker did not acknowledge, and never hangs."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.embedded_broker import free_port, start_tansu, stop_tansu
from tests.fakes.fitbit import FakeFitbit
from tests.fakes.google_health import FakeGoogleHealth
from tests.fakes.idp import FakeIdP
from tests.integration.ingest_harness import (
    END_ISO,
    START,
    START_ISO,
    Ingest,
    apple_hr_body,
    garmin_dailies,
    garmin_push,
    ingest_service,
)

pytestmark = pytest.mark.integration


async def _fitbit_notification(ingest: Ingest) -> httpx.Response:
    fake = FakeFitbit()
    body = fake.notification("GGNJL9", "2024-05-01", "activities")
    return await ingest.post(
        "/v1/webhooks/fitbit", content=body, headers={"X-Fitbit-Signature": fake.sign(body)}
    )


async def _google_notification(ingest: Ingest) -> httpx.Response:
    fake = FakeGoogleHealth()
    body = fake.notification("health-user-1", "heart-rate", start=START_ISO, end=END_ISO)
    return await ingest.post(
        "/v1/webhooks/google-health", content=body, headers=fake.webhook_headers(body)
    )


async def _garmin_push(ingest: Ingest) -> httpx.Response:
    await ingest.connect({"vendor": "garmin", "vendor_user_id": "g-down", "patient_id": "pt-d"})
    body = garmin_dailies("g-down", "s-down", start=START, heart_rate={"0": 70})
    return await garmin_push(ingest, body)


async def _apple_post(ingest: Ingest) -> httpx.Response:
    created = await ingest.connect({"vendor": "apple_health", "patient_id": "pt-down"})
    return await ingest.post(
        "/v1/webhooks/apple-health",
        content=apple_hr_body(bpm=64, at="2024-05-01 09:00:00 -0300"),
        headers={"Authorization": f"Bearer {created['device_key']}"},
    )


@pytest.mark.parametrize(
    "call",
    [_fitbit_notification, _google_notification, _garmin_push, _apple_post],
    ids=["fitbit", "google-health", "garmin", "apple"],
)
async def test_while_the_broker_is_down_webhooks_answer_503_with_retry_after(
    idp: FakeIdP, tmp_path: Path, call: Callable[[Ingest], Awaitable[httpx.Response]]
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens: nothing can be acknowledged
    settings: dict[str, Any] = {
        "fitbit_client_secret": FakeFitbit.client_secret,
        "google_health_webhook_secret": FakeGoogleHealth.endpoint_secret,
    }
    started = time.monotonic()
    async with ingest_service(nowhere, idp, tmp_path, ready=False, **settings) as ingest:
        response = await call(ingest)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] in ("broker_unavailable", "consent_view_loading")
    assert time.monotonic() - started < 15, "the webhook must not hang while the broker is down"


async def test_when_the_broker_goes_away_a_push_answers_503_within_the_publish_timeout(
    idp: FakeIdP, tmp_path: Path
) -> None:
    port = free_port()
    proc = start_tansu(port, quiet=True)
    try:
        async with ingest_service(
            f"127.0.0.1:{port}", idp, tmp_path, kafka_publish_timeout_s=1.0
        ) as ingest:
            await ingest.connect(
                {"vendor": "garmin", "vendor_user_id": "g-gone", "patient_id": "pt-g"}
            )
            stop_tansu(proc)
            started = time.monotonic()
            body = garmin_dailies("g-gone", "s-gone", start=START, heart_rate={"0": 70})
            response = await garmin_push(ingest, body)
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            assert time.monotonic() - started < 4
    finally:
        stop_tansu(proc)


async def test_when_the_broker_goes_away_fitbit_gets_503_well_within_its_5_s_deadline(
    idp: FakeIdP, tmp_path: Path
) -> None:
    # Default settings: KAFKA_PUBLISH_TIMEOUT_S (5 s) alone would use up Fitbit's whole 5 s for
    # the answer; the webhook's own publish deadline (2 s) answers 503 so Fitbit retries.
    port = free_port()
    proc = start_tansu(port, quiet=True)
    try:
        settings = {"fitbit_client_secret": FakeFitbit.client_secret}
        async with ingest_service(f"127.0.0.1:{port}", idp, tmp_path, **settings) as ingest:
            stop_tansu(proc)
            started = time.monotonic()
            response = await _fitbit_notification(ingest)
            elapsed = time.monotonic() - started
    finally:
        stop_tansu(proc)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "broker_unavailable"
    assert elapsed < 4, f"answered after {elapsed:.1f} s"
