"""Two rules instances in one consumer group emit exactly the alerts one instance would, also when
one of them is killed mid-stream (state in the shared rules database, deterministic event ids)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from deploy.embedded_broker import free_port, start_tansu, stop_tansu
from services.rules.app import create_app
from services.rules.settings import RulesSettings
from shared.events import Reading
from shared.kafka import ensure_topics
from shared.topics import ALERTS, ALL_TOPICS, READINGS
from tests.conftest import FAST_GROUPS, serving, wait_ready

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def stream(patients: int) -> list[Reading]:
    """Per patient, 30 s apart: normal, a sustained red episode, a yellow dip, recovery."""
    profile = [80] * 4 + [150] * 5 + [105] * 4 + [80] * 14
    return [
        Reading(
            reading_id=f"r-{p}-{i}",
            patient_id=f"pt-{p:03d}",
            source="test",
            metric="heart_rate",
            value=v,
            unit="/min",
            code="8867-4",
            measured_at=T0 + timedelta(seconds=30 * i),
            received_at=T0 + timedelta(seconds=30 * i),
        )
        for i, v in enumerate(profile)
        for p in range(patients)
    ]


async def produce(broker: str, readings: list[Reading]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
    await producer.start()
    try:
        for batch_start in range(0, len(readings), 200):
            futures = [
                await producer.send(READINGS.name, READINGS.encode(r), key=READINGS.key_of(r))
                for r in readings[batch_start : batch_start + 200]
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def alerts(broker: str, *, expect: int | None = None, timeout: float = 30) -> list[bytes]:
    """Every alerts.v1 message; with `expect`, wait until that many distinct event ids arrived."""
    consumer = AIOKafkaConsumer(ALERTS.name, bootstrap_servers=broker, auto_offset_reset="earliest")
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                batch = await consumer.getmany(timeout_ms=300)
                values += [m.value for msgs in batch.values() for m in msgs]
                distinct = {ALERTS.decode(v).event_id for v in values}
                if (expect is None and not batch) or (
                    expect is not None and len(distinct) >= expect
                ):
                    return values
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def fresh_broker() -> AsyncIterator[str]:
    port = free_port()
    proc = start_tansu(port, quiet=True)
    try:
        bootstrap = f"127.0.0.1:{port}"
        await ensure_topics(bootstrap, ALL_TOPICS)
        yield bootstrap
    finally:
        stop_tansu(proc)


def settings(broker: str, db: str) -> RulesSettings:
    return RulesSettings(
        kafka_bootstrap_servers=broker,
        rules_database_url=db,
        consent_required=False,
        **FAST_GROUPS,
    )


async def consumed(url: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics")).text
    line = next(
        (
            x
            for x in text.splitlines()
            if x.startswith('kafka_messages_consumed_total{topic="readings.v1"}')
        ),
        "x 0",
    )
    return float(line.rsplit(" ", 1)[1])


async def reference(readings: list[Reading], tmp: Path) -> dict[str, bytes]:
    async with fresh_broker() as broker:
        await produce(broker, readings)
        async with serving(create_app(settings(broker, f"sqlite:///{tmp}/ref.db"))) as url:
            await wait_ready(url)
            async with asyncio.timeout(30):
                while await consumed(url) < len(readings):
                    await asyncio.sleep(0.05)
            values = await alerts(broker)
    return {ALERTS.decode(v).event_id: v for v in values}


def by_id(values: list[bytes]) -> dict[str, set[bytes]]:
    found: dict[str, set[bytes]] = {}
    for v in values:
        found.setdefault(ALERTS.decode(v).event_id, set()).add(v)
    return found


async def test_two_instances_split_partitions_and_emit_exactly_the_single_instance_alerts(
    tmp_path: Path,
) -> None:
    readings = stream(24)
    expected = await reference(readings, tmp_path)
    assert len(expected) >= 48  # opened + escalations/resolves per patient
    async with fresh_broker() as broker:
        db = f"sqlite:///{tmp_path}/shared.db"
        async with (
            serving(create_app(settings(broker, db))) as a,
            serving(create_app(settings(broker, db))) as b,
        ):
            await wait_ready(a, b)
            await produce(broker, readings)
            found = by_id(await alerts(broker, expect=len(expected)))
            assert await consumed(a) > 0 and await consumed(b) > 0  # both took partitions
    assert set(found) == set(expected)
    assert all(copies == {expected[i]} for i, copies in found.items())  # byte-identical


async def test_killing_an_instance_mid_stream_changes_no_alert(tmp_path: Path) -> None:
    readings = stream(24)
    expected = await reference(readings, tmp_path)
    half = len(readings) // 2
    async with fresh_broker() as broker:
        db = f"sqlite:///{tmp_path}/shared.db"
        victim = spawn_rules(broker, db)
        try:
            async with serving(create_app(settings(broker, db))) as survivor:
                await wait_ready(survivor)
                await produce(broker, readings[:half])
                await alerts(broker, expect=1)  # the stream is flowing
                os.kill(victim.pid, signal.SIGKILL)  # no commit, no leave-group
                victim.wait()
                await produce(broker, readings[half:])
                found = by_id(await alerts(broker, expect=len(expected), timeout=60))
        finally:
            if victim.poll() is None:
                victim.kill()
                victim.wait()
    assert set(found) == set(expected)
    assert all(copies == {expected[i]} for i, copies in found.items())


def spawn_rules(broker: str, db: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker,
        "RULES_DATABASE_URL": db,
        "CONSENT_REQUIRED": "false",
        "RULES_PORT": str(free_port()),
        "LOG_LEVEL": "WARNING",
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
        "KAFKA_FETCH_MAX_WAIT_MS": "20",
    }
    return subprocess.Popen(  # a real process, so it can die without cleaning up
        [sys.executable, "-m", "services.rules"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
