"""Fitbit end to end: subscriber verification, signed notifications, pulls from FakeFitbit with the
connection's tokens, refresh, 410 and 429, into readings.v1 on the embedded broker."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.topics import READINGS, VENDOR_NOTIFICATIONS
from tests.fakes.fitbit import FakeFitbit, FitbitRequest
from tests.fakes.idp import FakeIdP
from tests.integration.ingest_harness import (
    FITBIT_VERIFICATION_CODE,
    Ingest,
    dead_letters,
    dropped_readings,
    fitbit_settings,
    ingest_service,
    read_topic,
    readings,
    token_body,
)

pytestmark = pytest.mark.integration
USER = "GGNJL9"
PATIENT = "pt-fitbit-1"
DAY = "2024-05-01"
# Local wall-clock samples; the connection's user lives at UTC-3.
SAMPLES = [("10:00:00", 72), ("10:00:10", 75), ("10:00:20", 0), ("10:00:30", 140)]
PUBLISHED = [s for s in SAMPLES if s[1] > 0]  # 0 is Fitbit's "no reading"


@pytest.fixture
def fitbit() -> Iterator[FakeFitbit]:
    fake = FakeFitbit().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
async def ingest(
    broker: str, idp: FakeIdP, tmp_path: Path, fitbit: FakeFitbit
) -> AsyncIterator[Ingest]:
    async with ingest_service(broker, idp, tmp_path, **fitbit_settings(fitbit)) as service:
        yield service


async def connect(
    ingest: Ingest, fake: FakeFitbit, *, user: str = USER, patient: str = PATIENT
) -> dict[str, Any]:
    """Grant at the fake and link the account with its tokens and a UTC-3 offset."""
    fake.set_heart_rate(user, DAY, SAMPLES)
    return await ingest.connect(
        {
            "vendor": "fitbit",
            "vendor_user_id": user,
            "patient_id": patient,
            "tokens": token_body(fake.grant(user)),
            "utc_offset_minutes": -180,
        }
    )


async def notify(
    ingest: Ingest,
    fake: FakeFitbit,
    *,
    user: str = USER,
    day: str = DAY,
    signature: str | None = "sign",
) -> httpx.Response:
    """POST an `activities` notification, signed as Fitbit does unless told otherwise."""
    body = fake.notification(user, day, "activities")
    headers = {} if signature is None else {"X-Fitbit-Signature": signature}
    if signature == "sign":
        headers["X-Fitbit-Signature"] = fake.sign(body)
    return await ingest.post("/v1/webhooks/fitbit", content=body, headers=headers)


async def wait_for_requests(
    fake: FakeFitbit, predicate: Any, *, timeout: float = 20.0
) -> list[FitbitRequest]:
    """Wait (off the event loop) until the fake's request log satisfies `predicate`."""
    held = await asyncio.to_thread(fake.wait_for, predicate, timeout)
    assert held, f"Fitbit saw {[(r.path, r.status) for r in fake.requests]}"
    return list(fake.requests)


def heart_requests(requests: list[FitbitRequest]) -> list[FitbitRequest]:
    return [r for r in requests if "/activities/heart/" in r.path]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"verify": FITBIT_VERIFICATION_CODE}, 204),
        ({"verify": "not-the-code"}, 404),
        ({}, 404),
    ],
    ids=["right", "wrong", "missing"],
)
async def test_subscriber_verification_answers_204_to_the_code_and_404_otherwise(
    ingest: Ingest, query: dict[str, str], status: int
) -> None:
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        response = await client.get("/v1/webhooks/fitbit", params=query)
    assert response.status_code == status
    if status == 204:
        assert response.content == b""


async def test_a_signed_notification_is_acknowledged_and_its_heart_rate_pulled_into_readings(
    ingest: Ingest, fitbit: FakeFitbit
) -> None:
    connected = await connect(ingest, fitbit)
    response = await notify(ingest, fitbit)
    assert response.status_code == 204, response.text
    assert response.content == b""
    published = await readings(ingest, count=len(PUBLISHED))
    # Local wall-clock at UTC-3 (the connection's utc_offset_minutes) → UTC instants.
    expected = {
        (datetime.fromisoformat(f"{DAY}T{clock}-03:00").astimezone(UTC), bpm)
        for clock, bpm in PUBLISHED
    }
    assert {(r.measured_at, r.value) for r in published} == expected
    for reading in published:
        assert (reading.metric, reading.unit, reading.code) == ("heart_rate", "/min", "8867-4")
        assert reading.patient_id == connected["patient_id"]
        assert reading.source == "fitbit"
        assert reading.measured_at.utcoffset() == timedelta(0)
    pulled = heart_requests(fitbit.requests)
    assert [(r.path, r.status) for r in pulled] == [
        (f"/1/user/{USER}/activities/heart/date/{DAY}/1d/1sec.json", 200)
    ]
    assert pulled[0].bearer is not None and pulled[0].bearer.startswith("fb-at-")


async def test_the_same_notification_twice_yields_the_same_reading_ids(
    ingest: Ingest, fitbit: FakeFitbit
) -> None:
    await connect(ingest, fitbit)
    assert (await notify(ingest, fitbit)).status_code == 204
    first = await readings(ingest, count=len(PUBLISHED))
    assert (await notify(ingest, fitbit)).status_code == 204
    both = await readings(ingest, count=2 * len(PUBLISHED))
    assert len(heart_requests(fitbit.requests)) == 2
    assert {r.reading_id for r in both} == {r.reading_id for r in first}
    assert len({r.reading_id for r in first}) == len(PUBLISHED)


@pytest.mark.parametrize(
    "signature",
    [None, "", "byJzj3X2wpYxoy6TdfJI5fmzpx0=", "wrong-secret"],
    ids=["missing", "empty", "another-body", "another-secret"],
)
async def test_a_bad_or_missing_signature_is_404_and_nothing_is_queued(
    ingest: Ingest, fitbit: FakeFitbit, signature: str | None
) -> None:
    await connect(ingest, fitbit)
    if signature == "wrong-secret":
        signature = FakeFitbit(client_secret="not-our-secret").sign(
            fitbit.notification(USER, DAY, "activities")
        )
    response = await notify(ingest, fitbit, signature=signature)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "invalid_signature"
    assert await read_topic(ingest.bootstrap, VENDOR_NOTIFICATIONS) == []


async def test_an_expired_access_token_is_refreshed_once_and_the_new_pair_persisted(
    broker: str, idp: FakeIdP, tmp_path: Path, fitbit: FakeFitbit
) -> None:
    fitbit.refresh_grace = False  # a used refresh token is refused from then on
    settings = fitbit_settings(fitbit)
    async with ingest_service(broker, idp, tmp_path, **settings) as ingest:
        connected = await connect(ingest, fitbit)
        fitbit.expire_access_tokens(USER)
        assert (await notify(ingest, fitbit)).status_code == 204
        await readings(ingest, count=len(PUBLISHED))
    refreshes = fitbit.token_requests()
    assert [r.status for r in refreshes] == [200]
    first_pull = heart_requests(fitbit.requests)
    assert [r.status for r in first_pull] == [401, 200]
    new_access = first_pull[-1].bearer
    assert new_access != first_pull[0].bearer
    # A new process (nothing cached) pulls with the pair the refresh stored.
    fitbit.set_heart_rate(USER, "2024-05-02", [("08:00:00", 66)])
    async with ingest_service(broker, idp, tmp_path, **settings) as ingest:
        assert (await notify(ingest, fitbit, day="2024-05-02")).status_code == 204
        await readings(ingest, count=len(PUBLISHED) + 1)
        assert (await ingest.connection(USER))["status"] == "active"
        assert connected["connection_id"] == (await ingest.connection(USER))["connection_id"]
    second_pull = heart_requests(fitbit.requests)[len(first_pull) :]
    assert [(r.status, r.bearer) for r in second_pull] == [(200, new_access)]
    assert len(fitbit.token_requests()) == 1


async def test_410_gone_marks_the_connection_needs_migration_and_dead_letters_the_pull(
    ingest: Ingest, fitbit: FakeFitbit
) -> None:
    await connect(ingest, fitbit)
    fitbit.gone_users.add(USER)
    assert (await notify(ingest, fitbit)).status_code == 204
    [letter] = await dead_letters(ingest, count=1)
    assert letter.reason == "vendor_gone"
    assert letter.source_topic == VENDOR_NOTIFICATIONS.name
    assert (await ingest.connection(USER))["status"] == "needs_migration"
    assert await readings(ingest) == []


async def test_429_is_retried_after_retry_after_and_then_published(
    ingest: Ingest, fitbit: FakeFitbit
) -> None:
    fitbit.rate_limit_next, fitbit.retry_after_s, fitbit.rate_limit_reset_s = 1, 2, 2
    await connect(ingest, fitbit)
    assert (await notify(ingest, fitbit)).status_code == 204
    await wait_for_requests(fitbit, lambda rs: any(r.status == 429 for r in rs))
    limited_at = time.monotonic()
    published = await readings(ingest, count=len(PUBLISHED))
    waited = time.monotonic() - limited_at
    assert len({r.reading_id for r in published}) == len(PUBLISHED)
    assert [r.status for r in heart_requests(fitbit.requests)] == [429, 200]
    assert waited >= 1.8, f"retried {waited:.2f} s after a 429 asking for 2 s"
    assert await dead_letters(ingest) == []


async def test_one_users_rate_limit_does_not_hold_up_other_users_pulls(
    ingest: Ingest, fitbit: FakeFitbit
) -> None:
    fitbit.rate_limit_next, fitbit.retry_after_s, fitbit.rate_limit_reset_s = 1, 20, 20
    await connect(ingest, fitbit)
    # OTHER1's key lands on another partition of vendor-notifications.v1 than GGNJL9's.
    await connect(ingest, fitbit, user="OTHER1", patient="pt-fitbit-2")
    assert (await notify(ingest, fitbit)).status_code == 204
    await wait_for_requests(fitbit, lambda rs: any(r.status == 429 for r in rs))
    assert (await notify(ingest, fitbit, user="OTHER1")).status_code == 204
    published = await read_topic(
        ingest.bootstrap,
        READINGS,
        until=lambda rs: any(r.patient_id == "pt-fitbit-2" for r in rs),
        timeout=8,
    )
    assert {r.patient_id for r in published} == {"pt-fitbit-2"}


async def test_a_rate_limited_pull_survives_a_restart_during_the_wait(
    broker: str, idp: FakeIdP, tmp_path: Path, fitbit: FakeFitbit
) -> None:
    fitbit.rate_limit_next, fitbit.retry_after_s, fitbit.rate_limit_reset_s = 1, 3, 3
    settings = fitbit_settings(fitbit)
    async with ingest_service(broker, idp, tmp_path, **settings) as ingest:
        await connect(ingest, fitbit)
        assert (await notify(ingest, fitbit)).status_code == 204
        await wait_for_requests(fitbit, lambda rs: any(r.status == 429 for r in rs))
        limited_at = time.monotonic()
    assert await readings(ingest) == []
    # A new process on the same database: the deferred pull is due after the wait and resumed.
    async with ingest_service(broker, idp, tmp_path, **settings) as ingest:
        published = await readings(ingest, count=len(PUBLISHED))
    assert time.monotonic() - limited_at >= 2.8
    assert len({r.reading_id for r in published}) == len(PUBLISHED)
    assert [r.status for r in heart_requests(fitbit.requests)] == [429, 200]


async def test_notices_of_a_rate_limited_user_wait_with_it_and_repeats_are_pulled_once(
    ingest: Ingest, fitbit: FakeFitbit
) -> None:
    fitbit.rate_limit_next, fitbit.retry_after_s, fitbit.rate_limit_reset_s = 1, 3, 3
    await connect(ingest, fitbit)
    assert (await notify(ingest, fitbit)).status_code == 204
    await wait_for_requests(fitbit, lambda rs: any(r.status == 429 for r in rs))
    # While the user is limited: the same notice twice more (one pull) and another day's notice.
    fitbit.set_heart_rate(USER, "2024-05-02", [("08:00:00", 66)])
    for day in (DAY, DAY, "2024-05-02"):
        assert (await notify(ingest, fitbit, day=day)).status_code == 204
    published = await readings(ingest, count=len(PUBLISHED) + 1)
    assert {r.value for r in published} == {bpm for _, bpm in PUBLISHED} | {66}
    # A sentinel on the same partition: every requeued copy was handled before it is pulled.
    fitbit.set_heart_rate(USER, "2024-05-03", [("08:00:00", 67)])
    assert (await notify(ingest, fitbit, day="2024-05-03")).status_code == 204
    await readings(ingest, count=len(PUBLISHED) + 2)
    pulled = [(r.path.split("/")[7], r.status) for r in heart_requests(fitbit.requests)]
    assert pulled[0] == (DAY, 429)
    assert sorted(pulled[1:-1]) == [(DAY, 200), ("2024-05-02", 200)]
    assert pulled[-1] == ("2024-05-03", 200)


async def test_a_pull_for_a_patient_without_consent_is_withheld_and_audited(
    broker: str, idp: FakeIdP, tmp_path: Path, fitbit: FakeFitbit
) -> None:
    settings = fitbit_settings(fitbit)
    async with ingest_service(broker, idp, tmp_path, consent_required=True, **settings) as ingest:
        await connect(ingest, fitbit, patient="pt-fitbit-nc")
        assert (await notify(ingest, fitbit)).status_code == 204
        # The audit record follows the pull's publish decision: once it is there, so are readings.
        dropped = await dropped_readings(ingest, count=1)
        assert [(a.patient_id, a.reason) for a in dropped] == [
            ("pt-fitbit-nc", "no_active_consent")
        ]
        assert await readings(ingest) == []


async def test_a_refused_refresh_marks_the_connection_needs_reauth_and_dead_letters_the_pull(
    ingest: Ingest, fitbit: FakeFitbit
) -> None:
    await connect(ingest, fitbit)
    fitbit.grant(USER)  # the user authorized again elsewhere: our refresh token is dead
    fitbit.expire_access_tokens(USER)
    assert (await notify(ingest, fitbit)).status_code == 204
    [letter] = await dead_letters(ingest, count=1)
    assert letter.reason == "vendor_auth_refused"
    assert [r.status for r in fitbit.token_requests()] == [400]
    assert (await ingest.connection(USER))["status"] == "needs_reauth"


async def test_a_batched_notification_pulls_each_entry_and_revokes_on_user_revoked_access(
    ingest: Ingest, fitbit: FakeFitbit
) -> None:
    await connect(ingest, fitbit)
    fitbit.set_spo2(USER, DAY, [(f"{DAY}T03:00:00", 96.5), (f"{DAY}T03:01:00", 0.0)])
    entries = [
        json.loads(fitbit.notification(USER, DAY, collection))[0]
        for collection in ("activities", "sleep", "foods")
    ]
    body = json.dumps(entries, separators=(",", ":")).encode()
    sent = await ingest.post(
        "/v1/webhooks/fitbit", content=body, headers={"X-Fitbit-Signature": fitbit.sign(body)}
    )
    assert sent.status_code == 204, sent.text
    published = await readings(ingest, count=len(PUBLISHED) + 1)
    [spo2] = [r for r in published if r.metric == "spo2"]
    assert (spo2.value, spo2.unit, spo2.code) == (96.5, "%", "59408-5")
    assert spo2.measured_at == datetime.fromisoformat(f"{DAY}T06:00:00+00:00")
    revoked = fitbit.notification(USER, DAY, "userRevokedAccess")
    sent = await ingest.post(
        "/v1/webhooks/fitbit",
        content=revoked,
        headers={"X-Fitbit-Signature": fitbit.sign(revoked)},
    )
    assert sent.status_code == 204, sent.text
    connection = await ingest.connection(USER)
    assert (connection["status"], connection["status_reason"]) == ("revoked", "userRevokedAccess")


async def test_a_body_notification_pulls_glucose_in_us_units_and_publishes_mg_dl(
    ingest: Ingest, fitbit: FakeFitbit
) -> None:
    # A user outside the US: without Accept-Language: en_US Fitbit answers mmol/L (13.9 here),
    # which read as mg/dL would turn severe hyperglycaemia into a "hypo".
    await connect(ingest, fitbit)
    fitbit.set_glucose(USER, DAY, [(f"{DAY}T08:30:00", 250.0, "SMBG")])
    body = fitbit.notification(USER, DAY, "body")
    headers = {"X-Fitbit-Signature": fitbit.sign(body)}
    response = await ingest.post("/v1/webhooks/fitbit", content=body, headers=headers)
    assert response.status_code == 204, response.text
    [reading] = await readings(ingest, count=1)
    assert (reading.metric, reading.unit, reading.value) == ("blood_glucose", "mg/dL", 250.0)
    assert reading.measured_at == datetime.fromisoformat(f"{DAY}T08:30:00-03:00")
    [pulled] = [r for r in fitbit.requests if "/glucose/" in r.path]
    assert (pulled.status, pulled.accept_language) == (200, "en_US")
