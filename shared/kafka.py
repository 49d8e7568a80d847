"""Kafka plumbing on aiokafka: topic creation, an acks=all publisher, an at-least-once consumer."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import ValidationError

from shared.audit import AuditRecorded
from shared.events import DeadLetter, Event
from shared.topics import AUDIT, DEADLETTER, Topic

log = structlog.get_logger(__name__)

E = TypeVar("E", bound=Event)

TOPIC_ALREADY_EXISTS = 36


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
        """Publish events (batched by the client) and wait until all are acknowledged."""
        producer = self._producer
        if producer is None:
            raise PublishFailedError("producer not connected")
        try:
            async with asyncio.timeout(self._timeout_s):
                futures = [
                    await producer.send(topic.name, value=topic.encode(e), key=topic.key_of(e))
                    for e in events
                ]
                await asyncio.gather(*futures)
        except (KafkaError, TimeoutError) as exc:
            raise PublishFailedError(f"broker did not acknowledge: {type(exc).__name__}") from exc


@dataclass(frozen=True)
class MessageContext:
    """Where a message came from, for logging, dedup and dead-lettering."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)


class ConsumerMetrics:
    """Per-service consumer counters, registered on the service's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumed = Counter(
            "kafka_messages_consumed", "Messages handled", ["topic"], registry=registry
        )
        self.dead_lettered = Counter(
            "kafka_messages_dead_lettered",
            "Messages sent to deadletter.v1",
            ["topic", "reason"],
            registry=registry,
        )
        self.retried = Counter(
            "kafka_message_retries",
            "Transient handler failures retried",
            ["topic"],
            registry=registry,
        )
        self.handle_seconds = Histogram(
            "kafka_message_handle_seconds", "Handler duration", ["topic"], registry=registry
        )


Handler = Callable[[E, MessageContext], Awaitable[None]]


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: KafkaEventConsumer[Any]) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._owner.commit_processed(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("kafka_partitions_assigned", partitions=sorted(tp.partition for tp in assigned))


class KafkaEventConsumer(Generic[E]):
    """At-least-once consumer: offsets are committed only after the handler finished.

    Undecodable or unprocessable messages go to deadletter.v1 and the consumer moves on; any other
    handler failure is transient and retried from the same offset with backoff.
    """

    def __init__(
        self,
        *,
        topic: Topic[E],
        handler: Handler[E],
        group_id: str,
        service: str,
        bootstrap_servers: str,
        deadletter: KafkaEventPublisher,
        metrics: ConsumerMetrics,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        fetch_max_wait_ms: int = 500,
        max_records: int = 500,
    ) -> None:
        self._topic = topic
        self._handler = handler
        self._group_id = group_id
        self._service = service
        self._bootstrap = bootstrap_servers
        self._deadletter = deadletter
        self._metrics = metrics
        self._session_timeout_ms = session_timeout_ms
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self._max_records = max_records
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._processed: dict[TopicPartition, int] = {}
        self.ready = False

    @property
    def topic_name(self) -> str:
        """Name of the consumed topic."""
        return self._topic.name

    async def run(self) -> None:
        """Consume until cancelled; owned and awaited by the service lifespan."""
        await retry_forever(self._start, what=f"consumer {self._topic.name}")
        self.ready = True
        assert self._consumer is not None
        try:
            while True:
                batch = await self._consumer.getmany(timeout_ms=500, max_records=self._max_records)
                for tp, records in batch.items():
                    await self._handle_partition(tp, records)
                await self.commit_processed(None)
        finally:
            self.ready = False
            await self._shutdown()

    async def _start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            client_id=f"{self._service}-{self._topic.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=self._heartbeat_interval_ms,
            rebalance_timeout_ms=self._session_timeout_ms,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
        )
        consumer.subscribe([self._topic.name], listener=_CommitOnRevoke(self))
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        log.info("kafka_consumer_started", topic=self._topic.name, group_id=self._group_id)

    async def _shutdown(self) -> None:
        if self._consumer is None:
            return
        try:
            # on_partitions_revoked is not called by stop(): commit explicitly first.
            await self.commit_processed(None)
        finally:
            await self._consumer.stop()
            self._consumer = None

    async def commit_processed(self, only: set[TopicPartition] | None) -> None:
        """Commit offset+1 of every handled message (optionally only for some partitions)."""
        if self._consumer is None or not self._processed:
            return
        offsets = {tp: off for tp, off in self._processed.items() if only is None or tp in only}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # The messages will be redelivered; handlers are idempotent, so that is safe.
            log.warning("kafka_commit_failed", error=type(exc).__name__)
            return
        for tp in offsets:
            self._processed.pop(tp, None)

    async def _handle_partition(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        assert self._consumer is not None
        for record in records:
            ctx = MessageContext(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=record.key,
                headers=dict(record.headers or ()),
            )
            with structlog.contextvars.bound_contextvars(
                topic=ctx.topic, partition=ctx.partition, offset=ctx.offset, event_id=None
            ):
                done = await self._handle_record(record, ctx)
            if not done:
                # Transient failure: rewind to this message and retry it after a pause.
                self._consumer.seek(tp, record.offset)
                self._metrics.retried.labels(self._topic.name).inc()
                await asyncio.sleep(1.0)
                return
            self._processed[tp] = record.offset + 1

    async def _handle_record(self, record: ConsumerRecord, ctx: MessageContext) -> bool:
        try:
            event = self._topic.decode(record.value or b"")
        except ValidationError as exc:
            return await self._dead_letter(record, "undecodable", _summarize(exc))
        event_id = getattr(event, "event_id", None) or getattr(event, "reading_id", None)
        structlog.contextvars.bind_contextvars(event_id=event_id)
        try:
            with self._metrics.handle_seconds.labels(self._topic.name).time():
                await self._handler(event, ctx)
        except UnprocessableEventError as exc:
            return await self._dead_letter(record, exc.reason, exc.detail)
        except Exception as exc:
            # Only the type: exception text may quote patient data.
            log.warning("event_handling_failed", error=type(exc).__name__)
            return False
        self._metrics.consumed.labels(self._topic.name).inc()
        return True

    async def _dead_letter(self, record: ConsumerRecord, reason: str, detail: str) -> bool:
        letter = DeadLetter(
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            reason=reason,
            detail=detail[:2000],
            key=record.key.decode(errors="replace") if record.key else None,
            payload=(record.value or b"").decode(errors="replace"),
            service=self._service,
            failed_at=datetime.now(UTC),
        )
        try:
            await self._deadletter.publish(DEADLETTER, letter)
        except PublishFailedError:
            log.warning("dead_letter_publish_failed", reason=reason)
            return False
        self._metrics.dead_lettered.labels(self._topic.name, reason).inc()
        log.warning("event_dead_lettered", reason=reason)
        return True


def _summarize(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


class KafkaAuditSink:
    """AuditSink of every service but consent: publish on audit.v1 (acks=all)."""

    def __init__(self, publisher: KafkaEventPublisher) -> None:
        self._publisher = publisher

    async def record(self, record: AuditRecorded) -> None:
        """Publish the record; raises PublishFailedError if the broker did not acknowledge."""
        await self._publisher.publish(AUDIT, record)
