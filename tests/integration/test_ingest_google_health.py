"""Google Health API end to end: the verification handshake, signed change notifications, and the
pull of data points from FakeGoogleHealth into readings.v1 on the embedded broker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from services.ingest.pulls import MAX_PAGES
from shared.topics import VENDOR_NOTIFICATIONS
from tests.fakes.google_health import (
    SIGNATURE_HEADER,
    FakeGoogleHealth,
    heart_rate_point,
    oxygen_saturation_point,
)
from tests.fakes.idp import FakeIdP
from tests.integration.ingest_harness import (
    Ingest,
    dead_letters,
    ingest_service,
    read_topic,
    readings,
    token_body,
)

pytestmark = pytest.mark.integration
USER = "health-user-1"
PATIENT = "pt-google-1"
WEBHOOK = "/v1/webhooks/google-health"
START, END = "2024-05-01T10:00:00Z", "2024-05-01T10:15:00Z"


@pytest.fixture
def google() -> Iterator[FakeGoogleHealth]:
    fake = FakeGoogleHealth().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
async def ingest(
    broker: str, idp: FakeIdP, tmp_path: Path, google: FakeGoogleHealth
) -> AsyncIterator[Ingest]:
    key_file = tmp_path / "google-health.pem"
    key_file.write_text(google.public_key_pem)
    settings: dict[str, Any] = {
        "google_health_client_id": google.client_id,
        "google_health_client_secret": google.client_secret,
        "google_health_webhook_secret": google.endpoint_secret,
        "google_health_public_key_file": str(key_file),
        "google_health_api_base_url": google.base_url,
        "google_health_token_url": google.token_url,
    }
    async with ingest_service(broker, idp, tmp_path, **settings) as service:
        yield service


async def connect(ingest: Ingest, fake: FakeGoogleHealth) -> dict[str, Any]:
    """Grant at the fake and link the Google health user with the tokens."""
    return await ingest.connect(
        {
            "vendor": "google_health",
            "vendor_user_id": USER,
            "patient_id": PATIENT,
            "tokens": token_body(fake.grant(USER)),
        }
    )


def without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != name}


VERIFICATION = json.dumps({"type": "verification"}).encode()


@pytest.mark.parametrize(
    ("authorization", "status"),
    [("right", 201), ("bearer", 201), (None, 401), ("not-the-secret", 403)],
)
async def test_the_verification_handshake_needs_the_webhook_secret(
    ingest: Ingest, google: FakeGoogleHealth, authorization: str | None, status: int
) -> None:
    headers = without(google.webhook_headers(VERIFICATION), "Authorization")
    if authorization == "right":
        headers["Authorization"] = google.endpoint_secret
    elif authorization == "bearer":
        headers["Authorization"] = f"Bearer {google.endpoint_secret}"
    elif authorization is not None:
        headers["Authorization"] = authorization
    response = await ingest.post(WEBHOOK, content=VERIFICATION, headers=headers)
    assert response.status_code == status, response.text
    assert await read_topic(ingest.bootstrap, VENDOR_NOTIFICATIONS) == []


async def test_a_signed_notification_is_acknowledged_and_the_interval_pulled_into_readings(
    ingest: Ingest, google: FakeGoogleHealth
) -> None:
    connected = await connect(ingest, google)
    google.add_points(
        USER,
        "heart-rate",
        [
            heart_rate_point(USER, "hr-1", bpm=71, at="2024-05-01T10:01:00Z"),
            heart_rate_point(USER, "hr-2", bpm=128, at="2024-05-01T10:14:00Z"),
            heart_rate_point(USER, "hr-late", bpm=90, at="2024-05-01T10:20:00Z"),
        ],
    )
    google.add_points(  # another data type: not part of this notification
        USER, "oxygen-saturation", [oxygen_saturation_point(USER, "o-1", percent=97, at=START)]
    )
    body = google.notification(USER, "heart-rate", start=START, end=END)
    response = await ingest.post(WEBHOOK, content=body, headers=google.webhook_headers(body))
    assert response.status_code == 204, response.text
    published = await readings(ingest, count=2)
    assert sorted((r.measured_at, r.value) for r in published) == [
        (datetime.fromisoformat("2024-05-01T10:01:00+00:00"), 71),
        (datetime.fromisoformat("2024-05-01T10:14:00+00:00"), 128),
    ]
    for reading in published:
        assert (reading.metric, reading.unit, reading.code) == ("heart_rate", "/min", "8867-4")
        assert (reading.patient_id, reading.source) == (connected["patient_id"], "google_health")
    listed = [r for r in google.requests if r.path.endswith("/dataPoints")]
    assert [(r.path, r.status) for r in listed] == [
        ("/v4/users/me/dataTypes/heart-rate/dataPoints", 200)
    ]
    assert await dead_letters(ingest) == []


@pytest.mark.parametrize("signature", ["tampered", "missing"])
async def test_a_notification_with_a_bad_signature_is_401_and_nothing_is_queued(
    ingest: Ingest, google: FakeGoogleHealth, signature: str
) -> None:
    await connect(ingest, google)
    body = google.notification(USER, "heart-rate", start=START, end=END)
    headers = google.webhook_headers(body)
    if signature == "tampered":  # signed, then changed on the way
        body = body.replace(b"heart-rate", b"oxygen-saturation")
    else:
        headers = without(headers, SIGNATURE_HEADER)
    response = await ingest.post(WEBHOOK, content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert await read_topic(ingest.bootstrap, VENDOR_NOTIFICATIONS) == []


async def test_an_expired_access_token_is_refreshed_and_the_refresh_token_kept(
    ingest: Ingest, google: FakeGoogleHealth
) -> None:
    # Google answers a refresh without a refresh token (it stays valid): the stored pair must
    # keep the old one, or the next refresh has nothing to send.
    await connect(ingest, google)
    granted = google.token_requests()
    for n, minute in enumerate(("10:01", "10:02"), start=1):
        at = f"2024-05-01T{minute}:00Z"
        google.add_points(USER, "heart-rate", [heart_rate_point(USER, f"hr-{n}", bpm=70, at=at)])
        google.expire_access_tokens(USER)
        body = google.notification(USER, "heart-rate", start=at, end=END)
        response = await ingest.post(WEBHOOK, content=body, headers=google.webhook_headers(body))
        assert response.status_code == 204, response.text
        await readings(ingest, count=n)
    refreshes = google.token_requests()[len(granted) :]
    assert [r.status for r in refreshes] == [200, 200]
    assert refreshes[0].form["refresh_token"] == refreshes[1].form["refresh_token"]
    assert (await ingest.connection(USER))["status"] == "active"


async def test_an_interval_of_more_pages_than_one_pull_takes_is_pulled_to_the_end(
    ingest: Ingest, google: FakeGoogleHealth
) -> None:
    # One point a page: the first pull stops at MAX_PAGES and requeues the rest with its token.
    await connect(ingest, google)
    google.page_size = 1
    total = MAX_PAGES + 5
    google.add_points(
        USER,
        "heart-rate",
        [
            heart_rate_point(
                USER, f"hr-{n}", bpm=60 + n, at=f"2024-05-01T10:{n // 2:02d}:{n % 2 * 30:02d}Z"
            )
            for n in range(total)
        ],
    )
    body = google.notification(USER, "heart-rate", start=START, end=END)
    response = await ingest.post(WEBHOOK, content=body, headers=google.webhook_headers(body))
    assert response.status_code == 204, response.text
    published = await readings(ingest, count=total)
    assert sorted(r.value for r in published) == [60 + n for n in range(total)]
    listed = [r for r in google.requests if r.path.endswith("/dataPoints")]
    assert [r.query.get("pageToken") for r in listed] == [None, *map(str, range(1, total))]
    assert await dead_letters(ingest) == []
