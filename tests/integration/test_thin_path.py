"""One reading travels ingest -> readings.v1 -> rules -> alerts.v1 -> notifier -> Slack, on real parts."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.notifier.app import create_app as create_notifier
from services.notifier.settings import NotifierSettings
from services.rules.app import create_app as create_rules
from services.rules.settings import RulesSettings
from shared.events import DeadLetter, Reading
from shared.topics import ALERTS, DEADLETTER, READINGS
from tests.conftest import FAST_GROUPS, auth_settings, bearer, serving, wait_ready
from tests.fakes.idp import FakeIdP
from tests.fakes.slack import FakeSlack

pytestmark = pytest.mark.integration
IDP = FakeIdP(audience="vitals-alerting")


@pytest.fixture(scope="module", autouse=True)
def _idp() -> Iterator[None]:
    IDP.start()
    yield
    IDP.stop()


@dataclass
class Pipeline:
    ingest: str
    rules: str
    notifier: str
    bootstrap: str


@contextlib.asynccontextmanager
async def pipeline(broker: str, slack: FakeSlack) -> AsyncIterator[Pipeline]:
    """Ingest, rules and notifier apps served on loopback against the broker and fake Slack."""
    # Consent enforcement has its own tests; here every patient is processed.
    common = {
        "kafka_bootstrap_servers": broker,
        "consent_required": False,
        **FAST_GROUPS,
        **auth_settings(IDP),
    }
    data = tempfile.mkdtemp()  # every database of this pipeline is fresh: no state between tests
    ingest = create_ingest(
        IngestSettings(**common, ingest_database_url=f"sqlite:///{data}/ingest.db")
    )
    rules = create_rules(RulesSettings(**common, rules_database_url=f"sqlite:///{data}/rules.db"))
    notifier = create_notifier(
        NotifierSettings(
            **common,
            slack_api_base_url=slack.base_url,
            slack_bot_token=slack.token,
            slack_channel="#care-alerts",
            notifier_database_url=f"sqlite:///{data}/notifier.db",
        )
    )
    async with serving(ingest) as i, serving(rules) as r, serving(notifier) as n:
        await wait_ready(i, r, n)
        yield Pipeline(ingest=i, rules=r, notifier=n, bootstrap=broker)


def hr(patient: str, value: float, at: datetime, unit: str = "/min") -> dict[str, object]:
    return {
        "patient_id": patient,
        "metric": "heart_rate",
        "value": value,
        "unit": unit,
        "measured_at": at.isoformat(),
        "source": "test",
    }


def sustained(patient: str, value: float, end: datetime) -> list[dict[str, object]]:
    """Three readings over 60 s: what the default rule set needs before heart rate turns red."""
    return [hr(patient, value, end - timedelta(seconds=s)) for s in (60, 30, 0)]


async def post(url: str, *readings: dict[str, object]) -> httpx.Response:
    async with httpx.AsyncClient(headers=bearer(IDP, "readings:write")) as client:
        return await client.post(f"{url}/v1/readings", json={"readings": list(readings)})


async def consumed(url: str, topic: str) -> float:
    """How many messages of a topic a service has finished handling (from its /metrics)."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics")).text
    for line in text.splitlines():
        if line.startswith(f'kafka_messages_consumed_total{{topic="{topic}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def wait_consumed(notifier_url: str, count: int, timeout: float = 5.0) -> None:
    """Wait until the notifier handled `count` alert events."""
    async with asyncio.timeout(timeout):
        while await consumed(notifier_url, "alerts.v1") < count:
            await asyncio.sleep(0.02)


async def wait_consumed_readings(rules_url: str, count: int, timeout: float = 5.0) -> None:
    """Wait until the rules service handled `count` readings."""
    async with asyncio.timeout(timeout):
        while await consumed(rules_url, "readings.v1") < count:
            await asyncio.sleep(0.02)


async def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 10.0) -> list[bytes]:
    """Read `count` messages of a topic from the beginning (no group)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
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


async def red_then_normal(broker: str, fake_slack: FakeSlack) -> None:
    """Post 130 /min: exactly one Slack call within 5 s; then 80 /min: no new red alert."""
    now = datetime.now(UTC)
    async with pipeline(broker, fake_slack) as p:
        # A lone spike pages nobody...
        response = await post(p.ingest, hr("pt-int-001", 130, now - timedelta(seconds=120)))
        assert response.status_code == 202, response.text
        await wait_consumed_readings(p.rules, 1)
        assert fake_slack.calls_mentioning("pt-int-001") == []
        # ...a sustained episode does.
        response = await post(p.ingest, *sustained("pt-int-001", 130, now - timedelta(seconds=2)))
        assert response.status_code == 202, response.text

        def one_for_patient(_: object) -> bool:
            return len(fake_slack.calls_mentioning("pt-int-001")) == 1

        assert await asyncio.to_thread(fake_slack.wait_for, one_for_patient, 5.0)
        call = fake_slack.calls_mentioning("pt-int-001")[0]
        assert call.body["channel"] == "#care-alerts"
        assert "RED" in call.body["text"] and "130" in call.body["text"]
        assert any(b["type"] == "header" for b in call.body["blocks"])

        response = await post(p.ingest, hr("pt-int-001", 80, now - timedelta(seconds=1)))
        assert response.status_code == 202
        await wait_consumed_readings(p.rules, 5)
        # The normal reading added no red alert (hysteresis keeps the episode open meanwhile).
        assert len(fake_slack.calls_mentioning("pt-int-001")) == 1
        assert fake_slack.rejected == []


async def test_red_heart_rate_reaches_slack_once_and_normal_rate_adds_no_red_alert(
    broker: str, fake_slack: FakeSlack
) -> None:
    await red_then_normal(broker, fake_slack)


async def test_accepted_reading_is_on_the_topic_in_canonical_form(
    broker: str, fake_slack: FakeSlack
) -> None:
    at = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
    sample = {
        "patient_id": "pt-int-002",
        "metric": "blood_glucose",
        "value": 5.5,
        "unit": "mmol/L",
        "measured_at": "2026-11-20T05:30:00-03:00",
        "source": "test",
        "source_id": "g-1",
    }
    async with pipeline(broker, fake_slack) as p:
        response = await post(p.ingest, sample)
        assert response.status_code == 202
        (reading_id,) = response.json()["reading_ids"]
        # 202 means the broker already has it: it is readable right away.
        (raw,) = await read_topic(p.bootstrap, READINGS.name, 1)
    reading = Reading.model_validate_json(raw)
    assert reading.reading_id == reading_id
    assert (reading.value, reading.unit, reading.code) == (99.088, "mg/dL", "2339-0")
    assert reading.measured_at == at


async def test_the_same_sample_twice_pages_once(broker: str, fake_slack: FakeSlack) -> None:
    samples = sustained("pt-int-003", 140, datetime.now(UTC) - timedelta(seconds=5))
    async with pipeline(broker, fake_slack) as p:
        first = await post(p.ingest, *samples)
        second = await post(p.ingest, *samples)  # a vendor retry
        assert first.json()["reading_ids"] == second.json()["reading_ids"]
        assert await asyncio.to_thread(
            fake_slack.wait_for, lambda c: len(fake_slack.calls_mentioning("pt-int-003")) >= 1, 5.0
        )
        await wait_consumed(p.notifier, 1)
        # A later, different patient's alert proves the pipeline moved past the duplicate.
        await post(p.ingest, *sustained("pt-int-004", 150, datetime.now(UTC)))
        assert await asyncio.to_thread(
            fake_slack.wait_for, lambda c: len(fake_slack.calls_mentioning("pt-int-004")) == 1, 5.0
        )
    assert len(fake_slack.calls_mentioning("pt-int-003")) == 1


async def test_undecodable_message_is_dead_lettered_and_the_consumer_moves_on(
    broker: str, fake_slack: FakeSlack
) -> None:
    async with pipeline(broker, fake_slack) as p:
        producer = AIOKafkaProducer(bootstrap_servers=p.bootstrap)
        await producer.start()
        try:
            garbage = b'{"reading_id": "x", "metric": "heart_rate", "value": "fast"}'
            meta = await producer.send_and_wait(READINGS.name, garbage, key=b"pt-int-005")
        finally:
            await producer.stop()
        await post(p.ingest, *sustained("pt-int-005", 135, datetime.now(UTC)))
        assert await asyncio.to_thread(
            fake_slack.wait_for, lambda c: len(fake_slack.calls_mentioning("pt-int-005")) == 1, 5.0
        )
        (raw,) = await read_topic(p.bootstrap, DEADLETTER.name, 1)
    letter = DeadLetter.model_validate_json(raw)
    assert letter.source_topic == READINGS.name
    assert (letter.source_partition, letter.source_offset) == (meta.partition, meta.offset)
    assert letter.reason == "undecodable" and "value" in letter.detail
    assert letter.service == "rules"


async def test_redelivered_alert_event_is_sent_once(broker: str, fake_slack: FakeSlack) -> None:
    now = datetime.now(UTC)
    async with pipeline(broker, fake_slack) as p:
        await post(p.ingest, *sustained("pt-int-006", 125, now))
        assert await asyncio.to_thread(
            fake_slack.wait_for, lambda c: len(fake_slack.calls_mentioning("pt-int-006")) == 1, 5.0
        )
        (raw,) = await read_topic(p.bootstrap, ALERTS.name, 1)
        producer = AIOKafkaProducer(bootstrap_servers=p.bootstrap)
        await producer.start()
        try:  # replay the same event, as a crashed rules instance would
            await producer.send_and_wait(ALERTS.name, raw, key=b"pt-int-006")
        finally:
            await producer.stop()
        await wait_consumed(p.notifier, 2)
    assert len(fake_slack.calls_mentioning("pt-int-006")) == 1
