"""Harness of the ingest end-to-end tests (test_ingest_*.py): ingest served on loopback against
the embedded broker, vendor fakes, and reading what reached the topics. It holds no tests itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from cryptography.fernet import Fernet

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.audit import AuditRecorded
from shared.events import DeadLetter, Event, Reading
from shared.topics import AUDIT, DEADLETTER, READINGS, Topic
from tests.conftest import FAST_GROUPS, auth_settings, bearer, serving, wait_ready
from tests.fakes.fitbit import FakeFitbit
from tests.fakes.idp import FakeIdP

E = TypeVar("E", bound=Event)

TOKEN_KEY = Fernet.generate_key().decode()
GARMIN_CLIENT_ID = "garmin-consumer-key-test"
FITBIT_VERIFICATION_CODE = "fitbit-verification-code-test"
JSON = {"Content-Type": "application/json"}
START = int(datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp())  # a push's startTimeInSeconds
START_ISO, END_ISO = "2024-05-01T12:00:00Z", "2024-05-01T12:15:00Z"


@dataclass
class Ingest:
    """A served ingest app, the broker it talks to and the IdP it trusts."""

    url: str
    bootstrap: str
    idp: FakeIdP

    async def post(
        self, path: str, *, content: bytes, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """POST raw bytes (a vendor signs or checks exactly these)."""
        async with httpx.AsyncClient(base_url=self.url) as client:
            return await client.post(path, content=content, headers={**JSON, **(headers or {})})

    async def connect(self, body: dict[str, Any]) -> dict[str, Any]:
        """Link a vendor account through the admin API; return the 201 body."""
        async with httpx.AsyncClient(base_url=self.url, headers=bearer(self.idp, "admin")) as c:
            response = await c.post("/v1/connections", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def connection(self, vendor_user: str) -> dict[str, Any]:
        """The connection of a vendor account as GET /v1/connections shows it."""
        async with httpx.AsyncClient(base_url=self.url, headers=bearer(self.idp, "admin")) as c:
            response = await c.get("/v1/connections")
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = [
            c for c in response.json()["connections"] if c["vendor_user_id"] == vendor_user
        ]
        assert len(found) == 1, response.text
        return found[0]


def ingest_settings(
    bootstrap: str, idp: FakeIdP, tmp_path: Path, **overrides: Any
) -> IngestSettings:
    """Ingest settings for a test: SQLite in tmp_path, token keys, consent not required."""
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "ingest_database_url": f"sqlite:///{tmp_path}/ingest.db",
        "ingest_token_keys": TOKEN_KEY,
        "consent_required": False,
        "garmin_client_id": GARMIN_CLIENT_ID,
        **auth_settings(idp),
        **FAST_GROUPS,
    }
    return IngestSettings(**{**values, **overrides})


@contextlib.asynccontextmanager
async def ingest_service(
    bootstrap: str, idp: FakeIdP, tmp_path: Path, *, ready: bool = True, **overrides: Any
) -> AsyncIterator[Ingest]:
    """Serve ingest on loopback (waiting for /readyz unless `ready=False`)."""
    app = create_app(ingest_settings(bootstrap, idp, tmp_path, **overrides))
    async with serving(app) as url:
        if ready:
            await wait_ready(url)
        yield Ingest(url=url, bootstrap=bootstrap, idp=idp)


def fitbit_settings(fake: FakeFitbit) -> dict[str, Any]:
    """Settings pointing ingest at a FakeFitbit."""
    return {
        "fitbit_client_id": fake.client_id,
        "fitbit_client_secret": fake.client_secret,
        "fitbit_verification_code": FITBIT_VERIFICATION_CODE,
        "fitbit_api_base_url": fake.base_url,
        "fitbit_token_url": fake.token_url,
    }


def token_body(answer: dict[str, Any]) -> dict[str, Any]:
    """A vendor's token answer as POST /v1/connections takes it."""
    expires_at = datetime.now(UTC) + timedelta(seconds=int(answer["expires_in"]))
    return {
        "access_token": answer["access_token"],
        "refresh_token": answer["refresh_token"],
        "expires_at": expires_at.isoformat(),
        "scope": answer.get("scope", ""),
    }


async def read_topic(
    bootstrap: str,
    topic: Topic[E],
    *,
    until: Callable[[list[E]], bool] | None = None,
    timeout: float = 20.0,
) -> list[E]:
    """Every event on `topic` from its beginning: read at least up to the end offsets at call time
    (so whatever the broker acknowledged before is in), then on until `until(events)` holds."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    await consumer.start()
    events: list[E] = []
    try:
        async with asyncio.timeout(timeout):
            partitions = await _all_partitions(consumer, topic.name)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            while not await _reached(consumer, ends) or (until is not None and not until(events)):
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    events += [topic.decode(r.value or b"") for r in records]
    except TimeoutError:
        pytest.fail(f"{topic.name}: condition not met within {timeout} s; got {events}")
    finally:
        await consumer.stop()
    return events


def at_least(n: int) -> Callable[[list[Any]], bool]:
    """Condition for read_topic: `n` events arrived."""
    return lambda events: len(events) >= n


async def _all_partitions(consumer: AIOKafkaConsumer, name: str) -> list[TopicPartition]:
    while not (ids := consumer.partitions_for_topic(name)):
        await consumer.topics()  # refreshes the metadata; the topic may be being created
        await asyncio.sleep(0.05)
    return [TopicPartition(name, p) for p in sorted(ids)]


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    return all([await consumer.position(tp) >= end for tp, end in ends.items()])


async def readings(ingest: Ingest, *, count: int = 0) -> list[Reading]:
    """The readings on readings.v1, waiting until there are at least `count`."""
    return await read_topic(ingest.bootstrap, READINGS, until=at_least(count))


async def dead_letters(ingest: Ingest, *, count: int = 0) -> list[DeadLetter]:
    """The records on deadletter.v1, waiting until there are at least `count`."""
    return await read_topic(ingest.bootstrap, DEADLETTER, until=at_least(count))


async def dropped_readings(ingest: Ingest, *, count: int = 0) -> list[AuditRecorded]:
    """The reading.dropped audit records on audit.v1, waiting until there are at least `count`."""

    def dropped(events: list[AuditRecorded]) -> list[AuditRecorded]:
        return [e for e in events if e.action == "reading.dropped"]

    events = await read_topic(ingest.bootstrap, AUDIT, until=lambda es: len(dropped(es)) >= count)
    return dropped(events)


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 20.0) -> Any:
    """Re-run an async check until it returns something truthy (an observable condition)."""
    async with asyncio.timeout(timeout):
        while not (result := await check()):
            await asyncio.sleep(0.05)
    return result


def garmin_dailies(
    user: str, summary_id: str, *, start: int, heart_rate: Mapping[str, float]
) -> bytes:
    """A Garmin `dailies` push of one record with a heart-rate offset map (vendor-formats §4.2)."""
    record = {
        "userId": user,
        "summaryId": summary_id,
        "calendarDate": datetime.fromtimestamp(start, UTC).date().isoformat(),
        "startTimeInSeconds": start,
        "startTimeOffsetInSeconds": -10800,
        "durationInSeconds": 86400,
        "timeOffsetHeartRateSamples": heart_rate,
    }
    return json.dumps({"dailies": [record]}).encode()


async def garmin_push(
    ingest: Ingest,
    body: bytes,
    *,
    summary_type: str = "dailies",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST a Garmin push with the right garmin-client-id unless `headers` say otherwise."""
    sent = {"garmin-client-id": GARMIN_CLIENT_ID, **(headers or {})}
    return await ingest.post(f"/v1/webhooks/garmin/{summary_type}", content=body, headers=sent)


def apple_hr_body(*, bpm: float, at: str) -> bytes:
    """A Health Auto Export body with one heart-rate point."""
    point = {"date": at, "Min": bpm, "Avg": bpm, "Max": bpm, "source": "Apple Watch"}
    metric = {"name": "heart_rate", "units": "count/min", "data": [point]}
    return json.dumps({"data": {"metrics": [metric], "workouts": []}}).encode()
