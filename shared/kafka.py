"""Kafka plumbing on aiokafka: topic creation, an acks=all publisher, an at-least-once consumer."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner

from shared.audit import AuditRecorded
from shared.events import Event
from shared.topics import AUDIT, Topic

log = structlog.get_logger(__name__)

E = TypeVar("E", bound=Event)

TOPIC_ALREADY_EXISTS = 36
_PARTITIONER = DefaultPartitioner()
MAX_BATCH_BYTES = 512 * 1024


class PublishFailedError(RuntimeError):
    """The broker did not acknowledge in time; the caller must not report success."""


class UnprocessableEventError(Exception):
    """A message that will never succeed (bad content, unknown unit...): dead-letter and move on."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


async def ensure_topics(bootstrap_servers: str, topics: Iterable[Topic[Any]]) -> None:
    """Create the topics that do not exist yet; an existing topic is left as it is."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="topic-setup")
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(t.name, num_partitions=t.partitions, replication_factor=1) for t in topics]
        )
        for name, code, message in response.topic_errors:
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise RuntimeError(f"cannot create topic {name}: error {code} {message}")
    finally:
        await admin.close()


async def retry_forever(
    action: Callable[[], Awaitable[None]], *, what: str, max_backoff_s: float = 5.0
) -> None:
    """Run an async action until it succeeds, backing off with jitter between tries."""
    delay = 0.2
    while True:
        try:
            await action()
            return
        except (KafkaError, OSError) as exc:
            log.warning(
                "kafka_connect_failed", what=what, error=type(exc).__name__, retry_in_s=delay
            )
            await asyncio.sleep(delay + random.uniform(0, delay / 2))  # noqa: S311 - jitter
            delay = min(delay * 2, max_backoff_s)


class KafkaEventPublisher:
    """Publish events with acks=all; returns only once the broker acknowledged every one."""

    def __init__(
        self, *, bootstrap_servers: str, client_id: str, timeout_s: float = 5.0, linger_ms: int = 2
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._timeout_s = timeout_s
        self._linger_ms = linger_ms
        self._producer: AIOKafkaProducer | None = None
        self.ready = False

    async def start(self) -> None:
        """Connect, retrying until the broker answers."""

        async def connect() -> None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                acks="all",
                # Idempotence is off on purpose: the embedded Tansu broker rejects InitProducerId.
                # Duplicates from retries are harmless because every event id is deterministic.
                enable_idempotence=False,
                linger_ms=self._linger_ms,
                # One produce request is in flight per broker, carrying one batch per partition:
                # 16 KiB (the default) held ~50 readings, so a day of one patient's samples took
                # over a hundred round trips. Well under the broker's 1 MB per batch.
                max_batch_size=MAX_BATCH_BYTES,
                request_timeout_ms=int(self._timeout_s * 1000),
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer

        await retry_forever(connect, what="producer")
        self.ready = True
        log.info("kafka_producer_started", client_id=self._client_id)

    async def stop(self) -> None:
        """Flush pending sends and disconnect."""
        self.ready = False
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, topic: Topic[E], event: E) -> None:
        """Publish one event and wait for the broker's acknowledgement."""
        await self.publish_many(topic, [event])

    async def publish_many(self, topic: Topic[E], events: Sequence[E]) -> None:
        """Publish events (batched per partition) and wait until all are acknowledged."""
        producer = self._producer
        if producer is None:
            raise PublishFailedError("producer not connected")
        try:
            async with asyncio.timeout(self._timeout_s):
                for future in await _enqueue(producer, topic, events):
                    await future
        except (KafkaError, TimeoutError) as exc:
            raise PublishFailedError(f"broker did not acknowledge: {type(exc).__name__}") from exc


# A record this large goes through producer.send(), which checks it against max_request_size.
_LARGE_RECORD_BYTES = 8192
# Fewer records than this for one partition go through producer.send() (see _enqueue).
_OWN_BATCH_MIN_RECORDS = 64


async def _enqueue(
    producer: AIOKafkaProducer, topic: Topic[E], events: Sequence[E]
) -> list[asyncio.Future[Any]]:
    """Queue the events, one record batch per partition, and return the delivery futures.

    Partitions are chosen exactly as producer.send() chooses them (aiokafka's DefaultPartitioner,
    murmur2 of the key over the sorted partitions), once per distinct key instead of per record;
    keyless and large records, and partitions with only a few records, take producer.send().
    """
    partitions = sorted(await producer.partitions_for(topic.name))
    partition_of: dict[bytes, int] = {}
    by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
    futures: list[asyncio.Future[Any]] = []
    for event in events:
        key, value = topic.key_of(event), topic.encode(event)
        if key is None or len(value) > _LARGE_RECORD_BYTES:
            futures.append(await producer.send(topic.name, value=value, key=key))
            continue
        partition = partition_of.get(key)
        if partition is None:
            partition = partition_of[key] = _PARTITIONER(key, partitions, partitions)
        by_partition.setdefault(partition, []).append((key, value))
    for partition, records in by_partition.items():
        if len(records) < _OWN_BATCH_MIN_RECORDS:
            # send() appends to the partition's open batch, shared with concurrent requests;
            # a batch of our own would wait for that one to drain first.
            for key, value in records:
                futures.append(
                    await producer.send(topic.name, value=value, key=key, partition=partition)
                )
            continue
        batch = producer.create_batch()
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None) is None:  # batch full
                futures.append(await _send_batch(producer, batch, topic.name, partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        futures.append(await _send_batch(producer, batch, topic.name, partition))
    return futures


async def _send_batch(
    producer: AIOKafkaProducer, batch: Any, topic: str, partition: int
) -> asyncio.Future[Any]:
    batch.close()  # so that producer.send() never appends to it behind our back
    while True:
        try:
            future: asyncio.Future[Any] = await producer.send_batch(
                batch, topic, partition=partition
            )
            return future
        except KafkaTimeoutError:
            # aiokafka's add_batch waits for the partition's previous batch to drain but counts
            # its timeout down by the total elapsed time on every wake-up, so it gives up early
            # when several batches queue for one partition. The caller's deadline still bounds it.
            continue


class KafkaAuditSink:
    """AuditSink of every service but consent: publish on audit.v1 (acks=all)."""

    def __init__(self, publisher: KafkaEventPublisher) -> None:
        self._publisher = publisher

    async def record(self, record: AuditRecorded) -> None:
        """Publish the record; raises PublishFailedError if the broker did not acknowledge."""
        await self._publisher.publish(AUDIT, record)
