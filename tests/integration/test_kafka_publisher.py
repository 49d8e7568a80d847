"""KafkaEventPublisher.publish_many on the embedded broker: every event acknowledged, on the
partition producer.send() would have chosen for its key, in order."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.events import DeadLetter, Reading
from shared.kafka import KafkaEventPublisher, ensure_topics
from shared.topics import Topic
from shared.vitals import Metric

pytestmark = pytest.mark.integration

BATCHED: Topic[Reading] = Topic("publisher-test.batched", Reading, key_field="patient_id")
REFERENCE: Topic[Reading] = Topic("publisher-test.reference", Reading, key_field="patient_id")
KEYLESS: Topic[DeadLetter] = Topic("publisher-test.keyless", DeadLetter, key_field=None)


def readings(n: int) -> list[Reading]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        Reading(
            reading_id=f"r-{i}",
            patient_id=f"pt-{i % 7}",
            source="api",
            metric=Metric.HEART_RATE,
            value=60 + i % 50,
            unit="/min",
            code="8867-4",
            measured_at=start + timedelta(seconds=i),
            received_at=start + timedelta(seconds=i),
        )
        for i in range(n)
    ]


async def consume(bootstrap: str, topic: str, expected: int) -> dict[int, list[bytes]]:
    """Values per partition, in offset order."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=20
    )
    await consumer.start()
    found: dict[int, list[bytes]] = defaultdict(list)
    try:
        while sum(len(v) for v in found.values()) < expected:
            batches = await consumer.getmany(timeout_ms=2000)
            assert batches, f"only {sum(len(v) for v in found.values())} of {expected} arrived"
            for tp, messages in batches.items():
                found[tp.partition] += [m.value for m in messages if m.value is not None]
    finally:
        await consumer.stop()
    return dict(found)


async def test_batched_publishing_keeps_the_partition_and_order_of_producer_send(
    broker: str,
) -> None:
    await ensure_topics(broker, [BATCHED, REFERENCE, KEYLESS])
    events = readings(1500)  # several record batches per partition
    publisher = KafkaEventPublisher(bootstrap_servers=broker, client_id="publisher-test")
    await publisher.start()
    reference = AIOKafkaProducer(bootstrap_servers=broker, acks="all", enable_idempotence=False)
    await reference.start()
    try:
        await publisher.publish_many(BATCHED, events[:20])  # a few per partition: send()
        await publisher.publish_many(BATCHED, events[20:])  # many per partition: own batches
        for e in events:
            await reference.send(REFERENCE.name, REFERENCE.encode(e), key=REFERENCE.key_of(e))
        await reference.flush()
        letters = [
            DeadLetter(
                source_topic="t",
                reason="r",
                payload="x" * size,
                service="ingest",
                failed_at=datetime(2026, 1, 1, tzinfo=UTC),
            )
            for size in (10, 50_000)  # a keyless record, and one larger than a record batch
        ]
        await publisher.publish_many(KEYLESS, letters)
    finally:
        await reference.stop()
        await publisher.stop()
    assert await consume(broker, BATCHED.name, len(events)) == await consume(
        broker, REFERENCE.name, len(events)
    )
    keyless = await consume(broker, KEYLESS.name, 2)
    assert sorted(len(v) for values in keyless.values() for v in values) == sorted(
        len(KEYLESS.encode(x)) for x in letters
    )
