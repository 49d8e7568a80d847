"""The notifier served on loopback against the embedded broker, a real database and provider fakes
(Slack, Twilio), with the test routing file (delays in seconds). Used by tests/integration."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI

from services.notifier.app import create_app
from services.notifier.handlers import Notifier
from services.notifier.settings import NotifierSettings
from shared.events import ConsentChanged, Event
from shared.topics import ALERTS, CONSENT, Topic
from tests.conftest import FAST_GROUPS, auth_settings, bearer, serving, wait_ready
from tests.fakes.idp import FakeIdP
from tests.fakes.slack import FakeSlack
from tests.fakes.twilio import FakeTwilio
from tests.services.notifier.support import ROUTING

SIGNING_SECRET = "slack-signing-secret-for-tests"
TWILIO_FROM = "+15005550006"


@dataclass
class Service:
    """A running notifier: its URL, app and the fakes it talks to."""

    url: str
    app: FastAPI
    broker: str
    slack: FakeSlack
    twilio: FakeTwilio

    @property
    def notifier(self) -> Notifier:
        """The notifier's moving parts (its store, its consent view)."""
        notifier: Notifier = self.app.state.notifier
        return notifier


def settings(
    *,
    broker: str,
    idp: FakeIdP,
    db: dict[str, Any],
    slack: FakeSlack,
    twilio: FakeTwilio,
    routing: Path,
    **overrides: Any,
) -> NotifierSettings:
    """Notifier settings for the fakes; fast retries so tests see them within seconds."""
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": broker,
        "consent_required": False,
        **FAST_GROUPS,
        **auth_settings(idp),
        "notifier_routing_file": str(routing),
        "slack_api_base_url": slack.base_url,
        "slack_bot_token": slack.token,
        "slack_channel": "#care-alerts",
        "slack_signing_secret": SIGNING_SECRET,
        "slack_channel_rate_per_s": 100.0,
        "slack_channel_burst": 100,
        "twilio_account_sid": twilio.account_sid,
        "twilio_auth_token": twilio.auth_token,
        "twilio_from": TWILIO_FROM,
        "twilio_api_base_url": twilio.base_url,
        "notifier_retry_base_s": 0.2,
        "notifier_retry_cap_s": 1.0,
        "notifier_max_attempts": 3,
        "notifier_poll_s": 0.2,
        **db,
    }
    return NotifierSettings(**(values | overrides))


def routing_file(tmp_path: Path, text: str = ROUTING) -> Path:
    """Write a routing file."""
    path = tmp_path / "routing.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def sqlite_db(tmp_path: Path) -> dict[str, Any]:
    """Database settings of a notifier on a SQLite file."""
    return {"notifier_database_url": f"sqlite:///{tmp_path}/notifier.db"}


def db_settings(database: dict[str, Any]) -> dict[str, Any]:
    """The `database` fixture's keys as notifier settings."""
    out = {"notifier_database_url": database["database_url"]}
    if "database_schema" in database:
        out["notifier_database_schema"] = database["database_schema"]
    return out


@contextlib.asynccontextmanager
async def running(
    config: NotifierSettings, slack: FakeSlack, twilio: FakeTwilio
) -> AsyncIterator[Service]:
    """Serve the notifier until the block ends (a graceful stop, like SIGTERM)."""
    app = create_app(config)
    async with serving(app) as url:
        await wait_ready(url)
        yield Service(url, app, config.kafka_bootstrap_servers, slack, twilio)


async def publish(broker: str, topic: Topic[Any], *events: Event, raw: bytes | None = None) -> None:
    """Publish events (or raw bytes) as the producing service would."""
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(topic.name, topic.encode(event), key=topic.key_of(event))
    finally:
        await producer.stop()


async def publish_alerts(broker: str, *events: Event) -> None:
    """What the rules service publishes on alerts.v1."""
    await publish(broker, ALERTS, *events)


async def publish_consent(broker: str, *events: ConsentChanged) -> None:
    """What the consent service publishes on consent.v1."""
    await publish(broker, CONSENT, *events)


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Wait until check() is truthy (state, not time); return its value."""
    async with asyncio.timeout(timeout):
        while not (result := check()):
            await asyncio.sleep(0.02)
    return result


async def eventually_async(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Wait until the awaited check() is truthy; return its value."""
    async with asyncio.timeout(timeout):
        while not (result := await check()):
            await asyncio.sleep(0.05)
    return result


async def read_topic(broker: str, topic: str, count: int, timeout: float = 10.0) -> list[bytes]:
    """Read `count` messages of a topic from the beginning (no group)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker, auto_offset_reset="earliest")
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            while len(values) < count:
                batch = await consumer.getmany(timeout_ms=200)
                values += [m.value for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()
    return values


async def api(
    service: Service, method: str, path: str, headers: dict[str, str], **kw: Any
) -> httpx.Response:
    """Call the notifier's API."""
    async with httpx.AsyncClient(base_url=service.url) as client:
        return await client.request(method, path, headers=headers, **kw)


def twilio_messages_to(twilio: FakeTwilio, number: str) -> list[dict[str, Any]]:
    """Messages the fake Twilio accepted for a number (SMS or WhatsApp)."""
    return [m for m in list(twilio.messages) if m["to"].removeprefix("whatsapp:") == number]


async def put_contact(service: Service, idp: FakeIdP, patient: str, **prefs: Any) -> None:
    """Set a patient's contact preferences through the API (the patient must be the tenant's)."""
    response = await api(
        service, "PUT", f"/v1/patients/{patient}/contact", bearer(idp, "contact:write"), json=prefs
    )
    assert response.status_code == 200, response.text
